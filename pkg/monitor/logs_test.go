package monitor

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// readEntries parses a CRI log file into "stream tag content" strings.
func readEntries(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`^\d{4}-\d\d-\d\dT[\d:.]+Z (stdout|stderr) ([PF]) (.*)$`)
	var out []string
	for _, l := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		m := re.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("not a CRI log line: %q", l)
		}
		content := m[3]
		if len(content) > 20 {
			content = content[:3] + "..." + string(rune('0'+len(content)/16384))
		}
		out = append(out, m[1]+" "+m[2]+" "+content)
	}
	return out
}

func TestStreamConsume(t *testing.T) {
	long := strings.Repeat("a", 16384+10)
	tests := []struct {
		desc   string
		chunks []string
		want   []string
	}{
		{"lines in one chunk", []string{"one\ntwo\n"}, []string{"stdout F one", "stdout F two"}},
		{"a line across chunks", []string{"hel", "lo\nwor", "ld\n"}, []string{"stdout F hello", "stdout F world"}},
		{"empty line", []string{"\n"}, []string{"stdout F "}},
		{"a last line without newline is flushed at the end", []string{"done\nno newline"}, []string{"stdout F done", "stdout F no newline"}},
		{"long line split at 16 KiB", []string{long + "\n"}, []string{"stdout P aaa...1", "stdout F aaaaaaaaaa"}},
		{"long line without newline split as it arrives", []string{long[:10000], long[10000:]}, []string{"stdout P aaa...1", "stdout F aaaaaaaaaa"}},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.log")
			w, err := openLog("", path)
			if err != nil {
				t.Fatal(err)
			}
			s := &stream{name: "stdout", log: w}
			for _, c := range tt.chunks {
				s.consume([]byte(c))
			}
			s.flush()
			w.close()
			got := readEntries(t, path)
			if strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Errorf("entries = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestOpenLogFileRefusesSymlinks(t *testing.T) {
	dir := t.TempDir()
	outside := filepath.Join(t.TempDir(), "victim")
	os.WriteFile(outside, []byte("keep"), 0o600)
	// A symlink planted in the pod's log directory, as the file or as a
	// directory on the way.
	os.Symlink(outside, filepath.Join(dir, "c.log"))
	os.Symlink(filepath.Dir(outside), filepath.Join(dir, "linkdir"))
	for _, rel := range []string{"c.log", "linkdir/victim", "../escape.log"} {
		if f, err := openLogFile(dir, rel); err == nil {
			f.Close()
			t.Errorf("openLogFile(%q) followed a symlink or escaped", rel)
		}
	}
	if data, _ := os.ReadFile(outside); string(data) != "keep" {
		t.Errorf("the file outside was written: %q", data)
	}
	// A normal path works, with its directory created.
	f, err := openLogFile(dir, "ctr/0.log")
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
}

func TestReopen(t *testing.T) {
	dir := t.TempDir()
	w, err := openLog(dir, "c.log")
	if err != nil {
		t.Fatal(err)
	}
	s := &stream{name: "stderr", log: w}
	s.consume([]byte("before\n"))
	// kubelet rotates: rename, then ReopenContainerLog.
	os.Rename(filepath.Join(dir, "c.log"), filepath.Join(dir, "c.log.1"))
	if err := w.reopen(); err != nil {
		t.Fatal(err)
	}
	s.consume([]byte("after\n"))
	w.close()
	if got := readEntries(t, filepath.Join(dir, "c.log.1")); strings.Join(got, "|") != "stderr F before" {
		t.Errorf("rotated file: %q", got)
	}
	if got := readEntries(t, filepath.Join(dir, "c.log")); strings.Join(got, "|") != "stderr F after" {
		t.Errorf("new file: %q", got)
	}
}
