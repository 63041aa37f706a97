package image

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/klauspost/compress/gzip"
	"golang.org/x/sys/unix"
)

// benchLayerMiB are the uncompressed sizes of the benchmark image's layers,
// base first: a distro base, a runtime, libraries, the application and its
// configuration, 50 MiB in all.
var benchLayerMiB = []int{20, 12, 9, 6, 3}

// benchWords is the vocabulary of the text part of benchmark files.
var benchWords = strings.Fields(`the of and to in is that for it as with was on be by this are from at or an
	not have which but had they one you were all can their been has there more if will would when func return
	error string int package import type struct var const range nil true false else switch case default config`)

// benchFile fills a file of size n the way real layers look to gzip: text
// (scripts, configs, docs) compresses well, machine code and data much
// less. Blocks of each alternate; about 40% of the bytes are random.
func benchFile(rng *rand.Rand, n int) []byte {
	out := make([]byte, 0, n)
	for len(out) < n {
		block := min(n-len(out), 1024+rng.IntN(8192))
		if rng.IntN(10) < 4 {
			start := len(out)
			out = out[:start+block]
			for i := start; i < len(out); i++ {
				out[i] = byte(rng.Uint32())
			}
			continue
		}
		for end := len(out) + block; len(out) < end; {
			w := benchWords[rng.IntN(len(benchWords))]
			if rng.IntN(12) == 0 {
				w += "\n"
			}
			out = append(out, w...)
			out = append(out, ' ')
		}
		out = out[:min(len(out), n)]
	}
	return out
}

// benchLayer makes a gzip layer (default level, as image builders write
// them) of about size bytes: many small files and a few large ones, in
// directories, with some symlinks. It returns the layer and its
// uncompressed size.
func benchLayer(tb testing.TB, seed uint64, size int) (v1.Layer, int64) {
	tb.Helper()
	rng := rand.New(rand.NewChaCha8([32]byte{byte(seed), 'b', 'e', 'n', 'c', 'h'}))
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	write := func(hdr *tar.Header, body []byte) {
		hdr.ModTime = testMtime
		if err := tw.WriteHeader(hdr); err != nil {
			tb.Fatal(err)
		}
		if _, err := tw.Write(body); err != nil {
			tb.Fatal(err)
		}
	}
	for written, i := 0, 0; written < size; i++ {
		dir := fmt.Sprintf("l%d/d%02d", seed, i/32)
		if i%32 == 0 {
			write(&tar.Header{Name: dir + "/", Typeflag: tar.TypeDir, Mode: 0o755}, nil)
		}
		var n int
		switch r := rng.IntN(100); {
		case r < 80:
			n = 512 + rng.IntN(16<<10)
		case r < 97:
			n = 64<<10 + rng.IntN(448<<10)
		default:
			n = 1<<20 + rng.IntN(3<<20)
		}
		n = min(n, size-written)
		name := fmt.Sprintf("%s/f%04d", dir, i)
		write(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(n)}, benchFile(rng, n))
		if i%50 == 0 {
			write(&tar.Header{Name: name + ".link", Typeflag: tar.TypeSymlink, Linkname: "f" + name[len(dir)+2:], Mode: 0o777}, nil)
		}
		written += n
	}
	if err := tw.Close(); err != nil {
		tb.Fatal(err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	if _, err := zw.Write(raw.Bytes()); err != nil {
		tb.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		tb.Fatal(err)
	}
	blob := gz.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(blob)), nil })
	if err != nil {
		tb.Fatal(err)
	}
	return l, int64(raw.Len())
}

// BenchmarkPull50MiB5Layers pulls a 50 MiB (uncompressed), 5-layer gzip
// image from an in-process registry into a fresh store each iteration:
// download, verification, unpack and the fsyncs that make it durable. Bytes
// per op are the uncompressed layer bytes. The registry serves at loopback
// speed, or paced like a 1 Gbit/s link shared by all downloads, where
// pulling is as much waiting for the network as working.
func BenchmarkPull50MiB5Layers(b *testing.B) {
	var layers []v1.Layer
	var total, compressed int64
	for i, mib := range benchLayerMiB {
		l, n := benchLayer(b, uint64(i), mib<<20)
		layers = append(layers, l)
		total += n
		size, err := l.Size()
		if err != nil {
			b.Fatal(err)
		}
		compressed += size
	}
	img := testImage(b, v1.Config{Cmd: []string{"app"}}, layers...)
	b.Logf("image: %d layers, %.1f MiB uncompressed, %.1f MiB compressed", len(layers), float64(total)/(1<<20), float64(compressed)/(1<<20))
	for _, tc := range []struct {
		name string
		wrap func(http.Handler) http.Handler
	}{
		{name: "link=loopback"},
		{name: "link=1Gbit", wrap: paced(1e9 / 8)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			reg := startRegistry(b, tc.wrap)
			reg.push(b, "bench:1", img)
			b.SetBytes(total)
			benchPull(b, reg.host+"/bench:1")
		})
	}
}

// benchPull pulls ref b.N times, each into a new store.
func benchPull(b *testing.B, ref string) {
	parent := b.TempDir()
	ctx := context.Background()
	var cpu time.Duration
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		root, err := os.MkdirTemp(parent, "store-")
		if err != nil {
			b.Fatal(err)
		}
		s, err := New(ctx, Options{Root: root})
		if err != nil {
			b.Fatal(err)
		}
		start := processCPU(b)
		b.StartTimer()
		if _, err := s.Pull(ctx, ref, nil); err != nil {
			b.Fatalf("pull %d: %v", i, err)
		}
		b.StopTimer()
		cpu += processCPU(b) - start
		if err := os.RemoveAll(root); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	// CPU time of the whole process (the registry serving the blobs
	// included): the work a pull costs, less noisy than wall time on a
	// shared machine.
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// paced limits what the registry sends, all responses together, to
// bytesPerSec, as one network link would.
func paced(bytesPerSec float64) func(http.Handler) http.Handler {
	l := &link{rate: bytesPerSec}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			next.ServeHTTP(pacedWriter{ResponseWriter: w, l: l}, r)
		})
	}
}

type link struct {
	mu   sync.Mutex
	rate float64   // bytes per second
	free time.Time // when the link has sent what it was given
}

// send waits until the link has had the time to send n more bytes.
func (l *link) send(n int) {
	l.mu.Lock()
	now := time.Now()
	if l.free.Before(now) {
		l.free = now
	}
	l.free = l.free.Add(time.Duration(float64(n) / l.rate * float64(time.Second)))
	wait := l.free.Sub(now)
	l.mu.Unlock()
	time.Sleep(wait)
}

type pacedWriter struct {
	http.ResponseWriter
	l *link
}

func (w pacedWriter) Write(p []byte) (int, error) {
	var n int
	for len(p) > 0 {
		chunk := p[:min(len(p), 64<<10)]
		w.l.send(len(chunk))
		m, err := w.ResponseWriter.Write(chunk)
		n += m
		if err != nil {
			return n, err
		}
		p = p[m:]
	}
	return n, nil
}

// processCPU is the user and system CPU time this process has used.
func processCPU(tb testing.TB) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
