package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io"
	"testing"
)

func TestLayerBuilder(t *testing.T) {
	build := func() *layer {
		l, err := newLayer().
			hardlink("bin/a", "bin/busybox").
			file("bin/busybox", 0o755, []byte("#!")).
			hardlink("bin/[", "bin/busybox").
			dir("tmp", 0o1777, 0, 0).
			symlink("lib64/ld.so", "/lib/ld.so").
			file("usr/local/bin/nnp", 0o4755, []byte("x")).
			build()
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	l := build()
	if again := build(); again.digest != l.digest || again.diffID != l.diffID {
		t.Fatalf("two builds differ: %s %s", l.digest, again.digest)
	}

	zr, err := gzip.NewReader(bytes.NewReader(l.blob))
	if err != nil {
		t.Fatal(err)
	}
	if !zr.ModTime.IsZero() || zr.Name != "" {
		t.Errorf("gzip header has mtime %v name %q", zr.ModTime, zr.Name)
	}
	tr := tar.NewReader(zr)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if !h.ModTime.Equal(epoch) || h.Uid != 0 || h.Gid != 0 || h.Uname != "" {
			t.Errorf("%s: mtime %v uid %d gid %d uname %q", h.Name, h.ModTime, h.Uid, h.Gid, h.Uname)
		}
		switch h.Name {
		case "tmp/":
			if h.Mode != 0o1777 {
				t.Errorf("tmp mode %o", h.Mode)
			}
		case "usr/local/bin/nnp":
			if h.Mode != 0o4755 {
				t.Errorf("nnp mode %o", h.Mode)
			}
		}
		names = append(names, h.Name)
	}
	// Parents first and sorted; hard links after every regular file.
	want := []string{"bin/", "bin/busybox", "lib64/", "lib64/ld.so", "tmp/", "usr/", "usr/local/", "usr/local/bin/",
		"usr/local/bin/nnp", "bin/[", "bin/a"}
	if len(names) != len(want) {
		t.Fatalf("entries %q, want %q", names, want)
	}
	for i := range want {
		if names[i] != want[i] {
			t.Fatalf("entries %q, want %q", names, want)
		}
	}

	if _, err := newLayer().hardlink("a", "missing").build(); err == nil {
		t.Error("a hard link to a missing file built")
	}
}

func TestRepoAndTag(t *testing.T) {
	for _, tc := range []struct{ ref, repo, tag string }{
		{"registry.k8s.io/pause:3.9", "pause", "3.9"},
		{"k8s.gcr.io/pause:3.9", "pause", "3.9"},
		{"gcr.io/k8s-staging-cri-tools/test-image-latest", "k8s-staging-cri-tools/test-image-latest", "latest"},
		{"public.ecr.aws/docker/library/busybox:1-musl", "docker/library/busybox", "1-musl"},
		{"localhost:5000/x/y", "x/y", "latest"},
	} {
		repo, tag, err := repoAndTag(tc.ref)
		if err != nil || repo != tc.repo || tag != tc.tag {
			t.Errorf("repoAndTag(%q) = %q, %q, %v; want %q, %q", tc.ref, repo, tag, err, tc.repo, tc.tag)
		}
	}
	if _, _, err := repoAndTag("busybox:1"); err == nil {
		t.Error("a reference without a registry host was accepted")
	}
}
