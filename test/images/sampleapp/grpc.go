package main

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// elasti.test.Echo is declared by hand with well-known wrapper messages, so neither the image
// nor its callers need generated code. A client calls it with
//
//	conn.Invoke(ctx, "/elasti.test.Echo/Echo", wrapperspb.String("hi"), out)
//	conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, "/elasti.test.Echo/Count")
//
// Count sends "<message> 0" .. "<message> 4", 50 ms apart, then ends: a bounded server stream.
var echoDesc = grpc.ServiceDesc{
	ServiceName: "elasti.test.Echo",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Echo",
		Handler: func(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			in := new(wrapperspb.StringValue)
			if err := dec(in); err != nil {
				return nil, err
			}
			return srv.(*echoServer).echo(ctx, in), nil
		},
	}},
	Streams: []grpc.StreamDesc{{
		StreamName:    "Count",
		ServerStreams: true,
		Handler: func(srv any, stream grpc.ServerStream) error {
			in := new(wrapperspb.StringValue)
			if err := stream.RecvMsg(in); err != nil {
				return err
			}
			return srv.(*echoServer).count(in, stream)
		},
	}},
}

type echoServer struct {
	counts *counts
}

func (s *echoServer) record(ctx context.Context) {
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		for _, id := range md.Get("x-request-id") {
			s.counts.addID(id)
		}
	}
}

func (s *echoServer) echo(ctx context.Context, in *wrapperspb.StringValue) *wrapperspb.StringValue {
	s.record(ctx)
	return wrapperspb.String(in.GetValue())
}

func (s *echoServer) count(in *wrapperspb.StringValue, stream grpc.ServerStream) error {
	s.record(stream.Context())
	for i := range 5 {
		if err := stream.SendMsg(wrapperspb.String(fmt.Sprintf("%s %d", in.GetValue(), i))); err != nil {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}
