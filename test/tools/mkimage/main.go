// Command mkimage writes a one-layer image tarball (docker-archive, which containerd and docker
// load) from static binaries, without a Docker engine.
//
//	mkimage -o out.tar -t docker.io/elasti/elasti-resolver:dev -entrypoint /elasti-resolver bin/elasti-resolver=/elasti-resolver
package main

import (
	"archive/tar"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

func run() error {
	out := flag.String("o", "", "Output tarball.")
	tag := flag.String("t", "", "Fully qualified image name and tag.")
	entrypoint := flag.String("entrypoint", "", "Entrypoint path inside the image.")
	user := flag.String("user", "65532:65532", "User the image runs as; non-root by default.")
	flag.Parse()
	if *out == "" || *tag == "" || *entrypoint == "" || flag.NArg() == 0 {
		return fmt.Errorf("usage: mkimage -o OUT -t TAG -entrypoint PATH SRC=DST [SRC=DST...]")
	}
	ref, err := name.NewTag(*tag)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	// A fixed time makes the same binaries give the same image digest.
	epoch := time.Unix(0, 0)
	_ = tw.WriteHeader(&tar.Header{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777, ModTime: epoch})
	dirs := map[string]bool{}
	for _, arg := range flag.Args() {
		src, dst, ok := strings.Cut(arg, "=")
		if !ok {
			return fmt.Errorf("%q is not SRC=DST", arg)
		}
		data, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		dst = strings.TrimPrefix(dst, "/")
		// Parent directories first, so every runtime's unpacker sees them with sane modes.
		for i, c := range dst {
			if c == '/' && !dirs[dst[:i]] {
				dirs[dst[:i]] = true
				if err := tw.WriteHeader(&tar.Header{Name: dst[:i+1], Typeflag: tar.TypeDir, Mode: 0o755, ModTime: epoch}); err != nil {
					return err
				}
			}
		}
		mode := int64(0o644)
		if st, err := os.Stat(src); err == nil && st.Mode().Perm()&0o111 != 0 {
			mode = 0o755
		}
		if err := tw.WriteHeader(&tar.Header{Name: dst, Mode: mode, Size: int64(len(data)), ModTime: epoch}); err != nil {
			return err
		}
		if _, err := tw.Write(data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf.Bytes())), nil })
	if err != nil {
		return err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cfg = cfg.DeepCopy()
	cfg.Architecture, cfg.OS = "amd64", "linux"
	cfg.Config.Entrypoint = []string{*entrypoint}
	cfg.Config.User = *user
	cfg.Config.Env = []string{"PATH=/"}
	cfg.Created = v1.Time{Time: epoch}
	if img, err = mutate.ConfigFile(img, cfg); err != nil {
		return err
	}
	return tarball.WriteToFile(*out, ref, img)
}
