package bridge

import (
	"errors"
	"fmt"

	"github.com/containernetworking/cni/pkg/skel"

	"github.com/cri-shim/cri-shim/pkg/ipam"
)

// Del detaches the container: best effort and idempotent, per the spec. It
// does not need the netns (it may be gone already): the host veth is found
// by name, the addresses and rules by attachment. Each step runs even when
// an earlier one failed; the failures are returned together so the runtime
// retries.
func (p *Plugin) Del(args *skel.CmdArgs) error {
	c, err := ParseConfig(args.StdinData, false)
	if err != nil {
		return err
	}
	a := attachmentOf(args)
	var errs []error

	fw, err := openFirewall()
	if err == nil {
		err = fw.deleteAttachmentRules(c.Name, func(got ipam.Attachment) bool { return got == a })
		fw.close()
	}
	if err != nil {
		errs = append(errs, err)
	}

	// Deleting the host end removes the pair, wherever the peer lives.
	if err := deleteLink(hostVethName(a)); err != nil {
		errs = append(errs, err)
	}

	al, _, err := p.allocator(c)
	if err == nil {
		err = al.Release(a)
	}
	if err != nil {
		errs = append(errs, fmt.Errorf("release the addresses of %s: %w", args.ContainerID, err))
	}
	return errors.Join(errs...)
}
