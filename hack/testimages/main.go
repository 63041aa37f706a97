// Command testimages builds reproducible stand-ins for every image critest
// (cri-tools v1.36.0) pulls and serves them from an in-memory registry, so a
// CRI runtime can be conformance-tested offline.
//
//	testimages serve [--addr 127.0.0.1:5000] [--ready-file FILE] [-v]
//	testimages list
//	testimages build --oci-layout DIR
//
// The runtime reaches the registry as a mirror of registry.k8s.io, k8s.gcr.io,
// gcr.io, public.ecr.aws and docker.io that keeps upstream names: an image is
// served at its upstream path without the host
// (registry.k8s.io/e2e-test-images/busybox:1.29-2 is
// /v2/e2e-test-images/busybox/manifests/1.29-2).
//
// Images are built in memory from Debian's busybox (its glibc shared objects
// copied from the host) and small static Go programs under progs/ (built once
// with the local go tool and cached): fixed mtimes, uid/gid 0, sorted tar
// entries, gzip without time stamps, so two builds on one machine give the
// same digests.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

func usage() {
	fmt.Fprint(os.Stderr, `usage:
  testimages serve [--addr 127.0.0.1:5000] [--ready-file FILE] [-v]   serve every image
  testimages list                                                     print names and digests
  testimages build --oci-layout DIR                                   write an OCI image layout
common flags: --busybox PATH (default /bin/busybox), --cache-dir DIR, --go PATH
`)
}

func defaultCacheDir() string {
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "cri-shim-testimages")
	}
	return filepath.Join(os.TempDir(), "cri-shim-testimages")
}

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	cmd := os.Args[1]
	fs := flag.NewFlagSet(cmd, flag.ExitOnError)
	fs.Usage = usage
	var o buildOptions
	fs.StringVar(&o.busybox, "busybox", "/bin/busybox", "Debian's (dynamically linked) busybox binary")
	fs.StringVar(&o.cacheDir, "cache-dir", defaultCacheDir(), "where the helper programs are built and cached")
	fs.StringVar(&o.goBin, "go", "", "the go tool (default: from $PATH)")
	addr := fs.String("addr", "127.0.0.1:5000", "serve: listen address")
	readyFile := fs.String("ready-file", "", "serve: write this file once serving")
	verbose := fs.Bool("v", false, "serve: log every request")
	layoutDir := fs.String("oci-layout", "", "build: write an OCI image layout to this directory")
	if err := fs.Parse(os.Args[2:]); err != nil || fs.NArg() != 0 {
		usage()
		os.Exit(2)
	}

	var err error
	switch cmd {
	case "serve":
		err = serve(o, *addr, *readyFile, *verbose)
	case "list":
		err = list(o, os.Stdout)
	case "build":
		if *layoutDir == "" {
			usage()
			os.Exit(2)
		}
		var images []*image
		if images, err = buildCatalog(o); err == nil {
			err = writeOCILayout(*layoutDir, images)
		}
	default:
		usage()
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "testimages:", err)
		os.Exit(1)
	}
}

func list(o buildOptions, w io.Writer) error {
	images, err := buildCatalog(o)
	if err != nil {
		return err
	}
	for _, img := range images {
		for _, n := range img.names {
			fmt.Fprintf(w, "%-70s %s  %s\n", n, img.digest, img.about)
		}
	}
	return nil
}

func serve(o buildOptions, addr, readyFile string, verbose bool) error {
	images, err := buildCatalog(o)
	if err != nil {
		return err
	}
	logger := log.New(io.Discard, "", 0)
	if verbose {
		logger = log.New(os.Stderr, "registry: ", log.LstdFlags)
	}
	h, err := newRegistry(images, logger)
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 30 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()

	n := 0
	for _, img := range images {
		n += len(img.names)
	}
	fmt.Fprintf(os.Stderr, "testimages: serving %d images under %d names on %s\n", len(images), n, l.Addr())
	if readyFile != "" {
		if err := os.WriteFile(readyFile, []byte(l.Addr().String()+"\n"), 0o644); err != nil {
			return err
		}
	}
	fmt.Println("ready")

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	select {
	case err := <-errc:
		return err
	case <-sigs:
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}
