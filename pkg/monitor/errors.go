package monitor

import (
	"errors"
	"fmt"

	"github.com/containerd/errdefs"
)

// The monitor answers over a socket, so an error's errdefs kind travels as
// a name beside its text (Response.Kind) and is restored by the client:
// cri-shim then answers the CRI with the right gRPC code (NotFound,
// AlreadyExists...) instead of Unknown.
var errorKinds = []struct {
	name string
	err  error
}{
	{"InvalidArgument", errdefs.ErrInvalidArgument},
	{"NotFound", errdefs.ErrNotFound},
	{"AlreadyExists", errdefs.ErrAlreadyExists},
	{"FailedPrecondition", errdefs.ErrFailedPrecondition},
	{"Unavailable", errdefs.ErrUnavailable},
	{"NotImplemented", errdefs.ErrNotImplemented},
}

// errorKind names err's errdefs kind, or "" when it has none.
func errorKind(err error) string {
	for _, k := range errorKinds {
		if errors.Is(err, k.err) {
			return k.name
		}
	}
	return ""
}

// responseError turns a failed Response back into an error of its kind.
func responseError(resp Response) error {
	for _, k := range errorKinds {
		if k.name == resp.Kind {
			return fmt.Errorf("container monitor: %s: %w", resp.Error, k.err)
		}
	}
	return fmt.Errorf("container monitor: %s", resp.Error)
}

// errorResponse is the Response that carries err.
func errorResponse(err error) Response {
	return Response{Error: err.Error(), Kind: errorKind(err)}
}
