package podprobe

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// maxBody is how much of a response body is read, as the kubelet reads, before the connection
// is dropped.
const maxBody = 10 << 10

// The transports are shared, but with keep-alives off every check dials its own connection: a
// pod that has just started is asked afresh each time, never over a connection it accepted
// before. No proxy from the environment, no Accept-Encoding and no certificate verification,
// as in the kubelet, which also offers HTTP/2 over TLS.
var (
	http1Transport = &http.Transport{
		DialContext:        (&net.Dialer{}).DialContext,
		TLSClientConfig:    &tls.Config{InsecureSkipVerify: true}, // the kubelet does not verify either
		DisableKeepAlives:  true,
		DisableCompression: true,
		ForceAttemptHTTP2:  true,
	}
	h2cTransport = func() *http.Transport {
		t := &http.Transport{
			DialContext:        (&net.Dialer{}).DialContext,
			DisableKeepAlives:  true,
			DisableCompression: true,
			Protocols:          new(http.Protocols),
		}
		t.Protocols.SetUnencryptedHTTP2(true)
		return t
	}()
)

// errEmpty keeps a zero Probe from passing: it would release requests to a pod nobody checked.
var errEmpty = errors.New("podprobe: empty Probe, build it with Translate")

// Check runs every check of p once, startup checks first, each on a new connection and within
// its probe's timeoutSeconds, and returns nil only if all pass. It stops at the first failure
// and says which container and probe failed.
func (p Probe) Check(ctx context.Context) error {
	return p.check(ctx, nil)
}

// check is Check that, when started is not nil, skips the startup checks it marks and marks
// those that pass: the kubelet stops running a container's startup probe once it has passed.
func (p Probe) check(ctx context.Context, started []bool) error {
	if len(p.checks) == 0 {
		return errEmpty
	}
	for i, c := range p.checks {
		if started != nil && started[i] {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, c.timeout)
		err := c.do.probe(cctx)
		cancel()
		if err != nil {
			return fmt.Errorf("container %q %s probe %s: %w", c.container, c.kind, c.do, err)
		}
		if started != nil && c.kind == startup {
			started[i] = true
		}
	}
	return nil
}

// httpGet passes on a status in [200, 400). Redirects to the same host name are followed (up to
// ten); a redirect elsewhere is not, and passes, as the kubelet counts it a success with a
// warning.
type httpGet struct {
	url    string
	host   string // Request.Host: the probe's Host header, or empty for the URL's
	header http.Header
	h2c    bool
}

var errTooManyRedirects = errors.New("stopped after 10 redirects")

func (g httpGet) probe(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.url, http.NoBody)
	if err != nil {
		return err
	}
	req.Header = g.header.Clone()
	req.Host = g.host
	client := &http.Client{Transport: http1Transport, CheckRedirect: sameHostRedirects}
	if g.h2c {
		client.Transport = h2cTransport
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, io.LimitReader(resp.Body, maxBody)); err != nil {
		return fmt.Errorf("reading the body: %w", err)
	}
	if resp.StatusCode < http.StatusOK || resp.StatusCode >= http.StatusBadRequest {
		return fmt.Errorf("status code %d", resp.StatusCode)
	}
	return nil
}

func sameHostRedirects(req *http.Request, via []*http.Request) error {
	if req.URL.Hostname() != via[0].URL.Hostname() {
		return http.ErrUseLastResponse
	}
	if len(via) >= 10 {
		return errTooManyRedirects
	}
	return nil
}

func (g httpGet) String() string {
	proto := ""
	if g.h2c {
		proto = " (h2c)"
	}
	return "GET " + g.url + proto
}

// tcpSocket passes once a connection opens; it is closed at once.
type tcpSocket struct {
	addr string
}

func (t tcpSocket) probe(ctx context.Context) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", t.addr)
	if err != nil {
		return err
	}
	return conn.Close()
}

func (t tcpSocket) String() string { return "tcp " + t.addr }

// grpcHealth passes when grpc.health.v1.Health/Check answers SERVING for the service.
type grpcHealth struct {
	addr    string
	service string
	tls     bool
}

func (g grpcHealth) probe(ctx context.Context) error {
	creds := insecure.NewCredentials()
	if g.tls {
		creds = credentials.NewTLS(&tls.Config{InsecureSkipVerify: true}) // the kubelet does not verify either
	}
	// passthrough: an IP literal needs no resolver. The call is not wait-for-ready, so a refused
	// connection fails at once; the kubelet's blocking dial would wait out the timeout, and Run
	// retries sooner than that.
	conn, err := grpc.NewClient("passthrough:///"+g.addr,
		grpc.WithTransportCredentials(creds), grpc.WithUserAgent(UserAgent))
	if err != nil {
		return err
	}
	defer conn.Close()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: g.service})
	if err != nil {
		return err
	}
	if s := resp.GetStatus(); s != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("health status %s", s)
	}
	return nil
}

func (g grpcHealth) String() string {
	s := "grpc " + g.addr
	if g.service != "" {
		s += " service " + g.service
	}
	if g.tls {
		s += " (TLS)"
	}
	return s
}
