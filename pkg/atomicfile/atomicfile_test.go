package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "rec.json")
	if err := WriteJSON(path, map[string]int{"v": 1}, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteJSON(path, map[string]int{"v": 2}, 0o640); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	st, _ := os.Stat(path)
	if string(data) != `{"v":2}` || st.Mode().Perm() != 0o640 {
		t.Errorf("content %q mode %v", data, st.Mode())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temp files left: %v", entries)
	}
	if err := Write(filepath.Join(dir, "missing", "x"), nil, 0o600); err == nil {
		t.Error("writing into a missing directory succeeded")
	}
	if err := WriteJSON(path, func() {}, 0o600); err == nil {
		t.Error("encoding a func succeeded")
	}
}

func TestReplace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rec")
	for _, v := range []string{"a", "b"} {
		if err := ReplaceJSON(path, v, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if data, _ := os.ReadFile(path); string(data) != `"b"` {
		t.Errorf("content %q", data)
	}
}
