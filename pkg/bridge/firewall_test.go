package bridge

import (
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"

	"github.com/cri-shim/cri-shim/pkg/ipam"
	"github.com/cri-shim/cri-shim/pkg/netns"
)

// TestListRulesUnderConcurrentCommits: while another connection deletes
// hostPort rules one transaction at a time, every listRules result still
// holds the rule nobody deletes. A plain netlink dump resumes by position and
// skips rules when earlier ones vanish between its reads (counted here as
// well, for the record); a DEL whose listing skipped its own rule that way
// left the rule behind.
func TestListRulesUnderConcurrentCommits(t *testing.T) {
	requireRoot(t)
	node := newNS(t)
	const (
		rounds = 10
		churn  = 300 // rules deleted per round: a dump of several reads
	)
	keep := ipam.Attachment{ContainerID: "keep", IfName: "eth0"}
	m := portMapping{hostPort: 8080, containerPort: 80, proto: unix.IPPROTO_TCP}
	pod := netip.MustParseAddr("10.244.1.2")
	rule := func(f *firewall, a ipam.Attachment) *nftables.Rule {
		return &nftables.Rule{Table: f.table, Chain: f.chain(chainHostports),
			UserData: comment(attachmentComment("pods", a)), Exprs: dnatExprs(m, pod)}
	}
	hasKeep := func(rules []*nftables.Rule) bool {
		for _, r := range rules {
			if _, a, ok := parseAttachmentComment(commentOf(r)); ok && a == keep {
				return true
			}
		}
		return false
	}
	inNode := func(fn func(f *firewall) error) error {
		return netns.Do(node, func() error {
			f, err := openFirewall()
			if err != nil {
				return err
			}
			defer f.close()
			return fn(f)
		})
	}

	if err := inNode(func(f *firewall) error {
		if err := f.ensureBase(); err != nil {
			return err
		}
		f.conn.AddRule(rule(f, keep))
		return f.conn.Flush()
	}); err != nil {
		t.Fatal(err)
	}

	var done atomic.Bool
	var wg sync.WaitGroup
	errs := make([]error, 3)
	var listings, plainListings, plainMisses int
	wg.Add(3)
	go func() { // the churn: rules put before the kept one, then deleted one by one
		defer wg.Done()
		defer done.Store(true)
		errs[0] = inNode(func(f *firewall) error {
			for range rounds {
				for i := range churn {
					f.conn.InsertRule(rule(f, ipam.Attachment{ContainerID: fmt.Sprint("churn", i), IfName: "eth0"}))
					if i%50 == 49 { // batches small enough for the ack buffer
						if err := f.conn.Flush(); err != nil {
							return err
						}
					}
				}
				if err := f.conn.Flush(); err != nil {
					return err
				}
				rules, err := f.listRules(chainHostports)
				if err != nil {
					return err
				}
				for _, r := range rules {
					if _, a, _ := parseAttachmentComment(commentOf(r)); a == keep {
						continue
					}
					if err := f.conn.DelRule(r); err != nil {
						return err
					}
					if err := f.conn.Flush(); err != nil {
						return err
					}
				}
			}
			return nil
		})
	}()
	go func() { // what cni-bridge uses: never misses
		defer wg.Done()
		errs[1] = inNode(func(f *firewall) error {
			for !done.Load() {
				rules, err := f.listRules(chainHostports)
				if err != nil {
					return err
				}
				listings++
				if !hasKeep(rules) {
					return fmt.Errorf("listing %d (%d rules) misses the rule nobody deleted", listings, len(rules))
				}
			}
			return nil
		})
	}()
	go func() { // the plain dump, for the record
		defer wg.Done()
		errs[2] = inNode(func(f *firewall) error {
			for !done.Load() {
				rules, err := f.conn.GetRules(f.table, f.chain(chainHostports))
				if err != nil {
					return err
				}
				plainListings++
				if !hasKeep(rules) {
					plainMisses++
				}
			}
			return nil
		})
	}()
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if listings == 0 {
		t.Fatal("no listing ran during the churn")
	}
	t.Logf("listRules: %d listings, none missed the kept rule; a plain dump missed it in %d of %d listings",
		listings, plainMisses, plainListings)
}
