package main

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// progsFS holds the sources of the small programs the images run. They use
// only the standard library, so they build offline in a throwaway module.
//
//go:embed progs
var progsFS embed.FS

// progNames are the programs under progs/, one binary each.
var progNames = []string{"ipcs", "nonewprivs", "pause", "pgrep", "webserver"}

// goBuildFlags make the binaries static and reproducible: the same toolchain
// and sources give the same bytes, so image digests are stable.
var goBuildFlags = []string{"-trimpath", "-buildvcs=false", "-ldflags=-s -w -buildid="}

// goCommand finds the go tool: $PATH, then $GOROOT/bin, then /usr/local/go.
func goCommand(explicit string) (string, error) {
	if explicit != "" {
		return explicit, nil
	}
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	for _, p := range []string{filepath.Join(os.Getenv("GOROOT"), "bin", "go"), "/usr/local/go/bin/go"} {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p, nil
		}
	}
	return "", fmt.Errorf("no go tool in $PATH, $GOROOT/bin or /usr/local/go/bin (use --go)")
}

// buildPrograms returns the static linux/amd64 binaries of progs/, by name.
// They are built once per (sources, go version) and kept in cacheDir.
func buildPrograms(goBin, cacheDir string) (map[string][]byte, error) {
	goBin, err := goCommand(goBin)
	if err != nil {
		return nil, err
	}
	version, err := exec.Command(goBin, "env", "GOVERSION").Output()
	if err != nil {
		return nil, fmt.Errorf("%s env GOVERSION: %w", goBin, err)
	}

	// The key covers everything that decides the bytes of the binaries.
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%q\n", strings.TrimSpace(string(version)), goBuildFlags)
	var files []string
	if err := fs.WalkDir(progsFS, "progs", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, p)
		}
		return err
	}); err != nil {
		return nil, err
	}
	sort.Strings(files)
	for _, f := range files {
		b, err := progsFS.ReadFile(f)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(h, "%s %d\n", f, len(b))
		h.Write(b)
	}
	dir := filepath.Join(cacheDir, "progs-"+hex.EncodeToString(h.Sum(nil))[:20])

	if out, err := readPrograms(dir); err == nil {
		return out, nil
	}

	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp(cacheDir, "build-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	src := filepath.Join(work, "src")
	for _, f := range files {
		b, _ := progsFS.ReadFile(f)
		dst := filepath.Join(src, filepath.FromSlash(f))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			return nil, err
		}
	}
	if err := os.WriteFile(filepath.Join(src, "go.mod"), []byte("module testimages.invalid\n\ngo 1.22\n"), 0o644); err != nil {
		return nil, err
	}
	bin := filepath.Join(work, "bin")
	args := append([]string{"build"}, goBuildFlags...)
	args = append(args, "-o", bin+"/", "./progs/...")
	cmd := exec.Command(goBin, args...)
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOAMD64=v1",
		"GOFLAGS=", "GOWORK=off", "GOTOOLCHAIN=local", "GO111MODULE=on", "GOPROXY=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	// Publish atomically: a concurrent builder produced the same bytes.
	if err := os.Rename(bin, dir); err != nil && !os.IsExist(err) {
		if _, statErr := os.Stat(dir); statErr != nil {
			return nil, err
		}
	}
	return readPrograms(dir)
}

func readPrograms(dir string) (map[string][]byte, error) {
	out := make(map[string][]byte, len(progNames))
	for _, n := range progNames {
		b, err := os.ReadFile(path.Join(dir, n))
		if err != nil {
			return nil, err
		}
		out[n] = b
	}
	return out, nil
}
