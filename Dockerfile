# Builds either binary for users who build with Docker: docker build --build-arg BINARY=resolver .
# (The project's own images are made without a Docker engine: see `make images`.)
FROM golang:1.26 AS build
ARG BINARY=controller
ARG VERSION=dev
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X github.com/elasti-dev/elasti/internal/version.Version=${VERSION}" -o /out/elasti ./${BINARY}/cmd

FROM gcr.io/distroless/static:nonroot
COPY --from=build /out/elasti /elasti
USER 65532:65532
ENTRYPOINT ["/elasti"]
