package main

import (
	"flag"
	"io"
	"testing"
	"time"
)

// TestDeployConfig: the config file operators install parses (every key
// known) and means the defaults.
func TestDeployConfig(t *testing.T) {
	fs := flag.NewFlagSet("cri-shim", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfg, err := load([]string{"--config", "../../deploy/config.toml"}, fs)
	if err != nil {
		t.Fatal(err)
	}
	def := defaultConfig()
	if cfg.StatsCollectionPeriod != def.StatsCollectionPeriod || cfg.CRIU != def.CRIU || cfg.Listen != def.Listen {
		t.Errorf("deploy/config.toml: stats %q, criu %q, listen %q; want the defaults %q, %q, %q",
			cfg.StatsCollectionPeriod, cfg.CRIU, cfg.Listen, def.StatsCollectionPeriod, def.CRIU, def.Listen)
	}
}

func TestStatsCollectionPeriod(t *testing.T) {
	for _, tc := range []struct {
		arg     string
		want    time.Duration
		wantErr bool
	}{
		{"10s", 10 * time.Second, false},
		{"1.5s", 1500 * time.Millisecond, false},
		{"0", -1, false}, // off: read on each call
		{"0s", -1, false},
		{"-1s", 0, true},
		{"ten", 0, true},
	} {
		fs := flag.NewFlagSet("cri-shim", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		cfg, err := load([]string{"--stats-collection-period", tc.arg}, fs)
		if tc.wantErr {
			if err == nil {
				t.Errorf("%q: accepted", tc.arg)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.arg, err)
			continue
		}
		if got, _ := cfg.statsPeriod(); got != tc.want {
			t.Errorf("%q: %v, want %v", tc.arg, got, tc.want)
		}
	}
}
