package image

import (
	"archive/tar"
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/gzip"
)

// FuzzUnpack feeds arbitrary bytes (seeded with hostile tars) to the layer
// unpacker and asserts that nothing ever appears outside the target dir:
// the target's parent must hold only the target and an untouched canary
// dir, including the canary dir that the seeds' absolute symlinks aim at.
func FuzzUnpack(f *testing.F) {
	fixed := newSandbox(f)
	out := fixed.outside
	seeds := [][]tarEntry{
		{{name: "../../../escape", body: "x"}},
		{{name: "/abs/../../escape", body: "x"}},
		{{name: "l", typ: tar.TypeSymlink, link: out}, {name: "l/escape", body: "x"}},
		{{name: "l", typ: tar.TypeSymlink, link: "../outside"}, {name: "l/escape", body: "x"}},
		{{name: "l", typ: tar.TypeSymlink, link: "/"}, {name: "l/tmp/escape", body: "x"}},
		{{name: "s", typ: tar.TypeSymlink, link: filepath.Join(out, "file")}, {name: "s", body: "x"}},
		{{name: "h", typ: tar.TypeLink, link: "../outside/file"}},
		{{name: "h", typ: tar.TypeLink, link: filepath.Join(out, "file")}},
		{{name: "s", typ: tar.TypeSymlink, link: filepath.Join(out, "file")}, {name: "h", typ: tar.TypeLink, link: "s"}, {name: "h", body: "x"}},
		{{name: "d", typ: tar.TypeSymlink, link: out}, {name: "h", typ: tar.TypeLink, link: "d/file"}},
		{{name: "../.wh.x"}, {name: "../.wh.outside"}, {name: "a/../../.wh.file"}},
		{{name: "d/", typ: tar.TypeDir}, {name: "d/.wh..wh..opq"}, {name: "../.wh..wh..opq"}},
		{{name: "dev/null", typ: tar.TypeChar, major: 1, minor: 3}, {name: "dev/sda", typ: tar.TypeBlock, major: 8}, {name: "p", typ: tar.TypeFifo}},
		{{name: "a/b", body: "x"}, {name: "a", typ: tar.TypeSymlink, link: out}, {name: "a/c", body: "y"}},
		{{name: "p", typ: tar.TypeFifo}, {name: "p/x", body: "x"}, {name: "h", typ: tar.TypeLink, link: "p/x"}},
		{{name: "p", typ: tar.TypeFifo}, {name: "p/x", body: "x"}, {name: "h", typ: tar.TypeLink, link: "p/x"}},
		{{name: "f", body: "x", xattrs: map[string]string{"user.a": "b", "trusted.overlay.redirect": "/x"}}},
	}
	for _, entries := range seeds {
		raw := makeTar(f, entries)
		f.Add(raw)
		var gz bytes.Buffer
		zw := gzip.NewWriter(&gz)
		zw.Write(raw)
		zw.Close()
		f.Add(gz.Bytes())
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s := newSandbox(t)
		if os.Geteuid() != 0 {
			// A 0000 dir from the tar would make TempDir's cleanup fail.
			t.Cleanup(func() { makeWritable(s.layer) })
		}
		_, _ = unpackLayer(context.Background(), bytes.NewReader(data), s.layer, defaultLimits())
		s.check(t)
		fixed.check(t)
		if entries, _ := os.ReadDir(fixed.layer); len(entries) != 0 {
			t.Fatalf("fixed sandbox layer dir written to")
		}
	})
}

func makeWritable(dir string) {
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(p, 0o700)
		}
		return nil
	})
}
