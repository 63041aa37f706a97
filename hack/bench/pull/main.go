// Command pull times PullImage of a 1 MiB and a 50 MiB image from a local
// registry (an in-process go-containerregistry registry on the namespace's
// loopback), removing the image between rounds so every pull downloads and
// unpacks. It runs inside hack/critest.sh --exec (CRI_SOCK, RUNTIME,
// RUN_DIR), so both runtimes pull the same images from the same registry.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

const addr = "127.0.0.1:5001"

func main() {
	rounds := flag.Int("rounds", 10, "pulls per image")
	flag.Parse()
	if err := run(*rounds); err != nil {
		fmt.Fprintln(os.Stderr, "pull:", err)
		os.Exit(1)
	}
}

func run(rounds int) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	go http.Serve(l, registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	// The runtimes reach the registry over plain HTTP through their
	// hosts.toml (containerd's certs.d layout, which cri-shim reads too).
	hostDir := filepath.Join(os.Getenv("RUN_DIR"), "certs.d", addr)
	os.MkdirAll(hostDir, 0o755)
	toml := fmt.Sprintf("server = \"http://%s\"\n\n[host.\"http://%s\"]\n  capabilities = [\"pull\", \"resolve\"]\n", addr, addr)
	if err := os.WriteFile(filepath.Join(hostDir, "hosts.toml"), []byte(toml), 0o644); err != nil {
		return err
	}
	images := []struct {
		ref           string
		layers        int
		bytesPerLayer int64
	}{
		{addr + "/bench/small:1", 1, 1 << 20},
		{addr + "/bench/large:1", 5, 10 << 20},
	}
	for _, im := range images {
		img, err := random.Image(im.bytesPerLayer, int64(im.layers))
		if err != nil {
			return err
		}
		ref, _ := name.ParseReference(im.ref, name.Insecure)
		if err := remote.Write(ref, img); err != nil {
			return fmt.Errorf("push %s: %w", im.ref, err)
		}
		if size, _ := imageSize(img); size > 0 {
			fmt.Printf("%s: pushed %s (%.1f MiB)\n", os.Getenv("RUNTIME"), im.ref, float64(size)/(1<<20))
		}
	}
	conn, err := grpc.NewClient("unix://"+os.Getenv("CRI_SOCK"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	img := runtimeapi.NewImageServiceClient(conn)
	ctx := context.Background()
	for _, im := range images {
		var times []time.Duration
		for range rounds {
			start := time.Now()
			if _, err := img.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: im.ref}}); err != nil {
				return fmt.Errorf("pull %s: %w", im.ref, err)
			}
			times = append(times, time.Since(start))
			if _, err := img.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: im.ref}}); err != nil {
				return err
			}
		}
		slices.Sort(times)
		fmt.Printf("%s: PullImage %s: p50 %.1f ms, p90 %.1f ms (%d rounds)\n", os.Getenv("RUNTIME"), im.ref,
			ms(times[len(times)/2]), ms(times[len(times)*9/10]), rounds)
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

func imageSize(img v1.Image) (int64, error) {
	layers, err := img.Layers()
	if err != nil {
		return 0, err
	}
	var n int64
	for _, l := range layers {
		s, err := l.Size()
		if err != nil {
			return 0, err
		}
		n += s
	}
	return n, nil
}
