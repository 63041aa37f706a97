package pod

import (
	"testing"
	"time"
)

func TestPhases(t *testing.T) {
	p := newPhases(true)
	time.Sleep(2 * time.Millisecond)
	p.done("first")
	p.add("beside", 1500*time.Microsecond)
	p.done("second")
	kv := p.keysAndValues()
	want := []string{"first", "beside", "second", "total"}
	if len(kv) != 2*len(want) {
		t.Fatalf("keysAndValues() = %v, want keys %v", kv, want)
	}
	for i, k := range want {
		if kv[2*i] != k {
			t.Errorf("key %d = %v, want %s", i, kv[2*i], k)
		}
		if _, err := time.ParseDuration(kv[2*i+1].(string)); err != nil {
			t.Errorf("%s: value %v is not a duration: %v", k, kv[2*i+1], err)
		}
	}
	if first, _ := time.ParseDuration(kv[1].(string)); first < 2*time.Millisecond {
		t.Errorf("first = %v, want >= 2ms (the sleep before it)", first)
	}
	if kv[3] != "1.5ms" {
		t.Errorf("beside = %v, want 1.5ms", kv[3])
	}
	if total, _ := time.ParseDuration(kv[7].(string)); total < 2*time.Millisecond {
		t.Errorf("total = %v, want >= 2ms", total)
	}
}

func TestPhasesDisabled(t *testing.T) {
	p := newPhases(false)
	p.done("first")
	p.add("beside", time.Millisecond)
	if kv := p.keysAndValues(); kv != nil {
		t.Errorf("disabled phases recorded %v", kv)
	}
}
