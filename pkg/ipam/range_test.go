package ipam

import (
	"net/netip"
	"testing"
)

func TestNewRange(t *testing.T) {
	tests := []struct {
		subnet       string
		wantErr      bool
		gateway      string
		first, last  string
		size         uint64
		notContained []string
	}{
		{subnet: "10.244.1.0/24", gateway: "10.244.1.1", first: "10.244.1.2", last: "10.244.1.254", size: 253,
			notContained: []string{"10.244.1.0", "10.244.1.1", "10.244.1.255", "10.244.2.2"}},
		{subnet: "10.244.1.7/24", gateway: "10.244.1.1", first: "10.244.1.2", last: "10.244.1.254", size: 253},
		{subnet: "10.0.0.0/29", gateway: "10.0.0.1", first: "10.0.0.2", last: "10.0.0.6", size: 5},
		{subnet: "10.0.0.0/30", gateway: "10.0.0.1", first: "10.0.0.2", last: "10.0.0.2", size: 1},
		{subnet: "10.0.0.0/31", wantErr: true},
		{subnet: "10.0.0.0/32", wantErr: true},
		{subnet: "fd00:10:244:1::/64", gateway: "fd00:10:244:1::1", first: "fd00:10:244:1::2", last: "fd00:10:244:1:ffff:ffff:ffff:fffe", size: 1<<64 - 3,
			notContained: []string{"fd00:10:244:1::", "fd00:10:244:1::1", "fd00:10:244:1:ffff:ffff:ffff:ffff"}},
		{subnet: "fd00::/8", gateway: "fd00::1", first: "fd00::2", last: "fdff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", size: ^uint64(0)},
		{subnet: "fd00::/127", wantErr: true},
		{subnet: "::ffff:10.0.0.0/120", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.subnet, func(t *testing.T) {
			r, err := NewRange(netip.MustParsePrefix(tt.subnet))
			if tt.wantErr {
				if err == nil {
					t.Fatalf("NewRange(%s) = %+v, want error", tt.subnet, r)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.Gateway.String() != tt.gateway || r.first.String() != tt.first || r.last.String() != tt.last {
				t.Errorf("gateway/first/last = %s/%s/%s, want %s/%s/%s", r.Gateway, r.first, r.last, tt.gateway, tt.first, tt.last)
			}
			if got := r.Size(); got != tt.size {
				t.Errorf("Size() = %d, want %d", got, tt.size)
			}
			for _, ip := range tt.notContained {
				if r.Contains(netip.MustParseAddr(ip)) {
					t.Errorf("Contains(%s) = true", ip)
				}
			}
			if !r.Contains(r.first) || !r.Contains(r.last) {
				t.Errorf("range does not contain its own bounds")
			}
			if r.next(r.last) != r.first {
				t.Errorf("next(last) = %s, want wrap to %s", r.next(r.last), r.first)
			}
		})
	}
}
