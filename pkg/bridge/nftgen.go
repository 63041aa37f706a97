package bridge

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// maxListAttempts bounds the retries of a rule listing that keeps meeting
// concurrent transactions.
const maxListAttempts = 100

// listRules lists a chain's rules as they were in one ruleset generation.
//
// A netlink dump of rules comes in several reads, and the kernel resumes it
// by position: a transaction committed in between (another cni-bridge DEL,
// kube-proxy, anyone) shifts the positions and the dump silently skips rules
// (the kernel flags such a dump NLM_F_DUMP_INTR, which google/nftables does
// not surface). A DEL that missed its own rule that way left it behind with
// 20 DELs in parallel. So, like nft(8), compare the generation ID before and
// after the dump and list again until they match.
func (f *firewall) listRules(chain string) ([]*nftables.Rule, error) {
	for attempt := 0; attempt < maxListAttempts; attempt++ {
		before, err := f.generation()
		if err != nil {
			return nil, err
		}
		rules, err := f.conn.GetRules(f.table, f.chain(chain))
		if err != nil {
			return nil, err
		}
		after, err := f.generation()
		if err != nil {
			return nil, err
		}
		if before == after {
			return rules, nil
		}
		// Others are committing: let them, then try again.
		time.Sleep(time.Duration(rand.IntN(2000)) * time.Microsecond)
	}
	return nil, fmt.Errorf("nftables ruleset changed during each of %d listings of chain %s", maxListAttempts, chain)
}

// generation returns the nftables generation ID of the network namespace:
// the kernel increments it with every committed transaction.
func (f *firewall) generation() (uint32, error) {
	msgs, err := f.gen.Execute(netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETGEN),
			Flags: netlink.Request,
		},
		// struct nfgenmsg: family, version, resource ID.
		Data: []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0},
	})
	if err != nil {
		return 0, fmt.Errorf("get nftables generation: %w", err)
	}
	for _, m := range msgs {
		if len(m.Data) < 4 {
			continue
		}
		ad, err := netlink.NewAttributeDecoder(m.Data[4:])
		if err != nil {
			return 0, fmt.Errorf("decode nftables generation: %w", err)
		}
		ad.ByteOrder = binary.BigEndian
		for ad.Next() {
			if ad.Type() == unix.NFTA_GEN_ID {
				return ad.Uint32(), nil
			}
		}
	}
	return 0, errors.New("get nftables generation: no NFTA_GEN_ID in the reply")
}
