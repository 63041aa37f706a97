package image

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// classify gives a registry error the errdefs meaning the CRI layer maps to
// a gRPC code: 401 -> Unauthenticated, 403 -> PermissionDenied, unknown
// name/manifest/blob -> NotFound, 5xx and network failures -> Unavailable.
// Errors that already carry a meaning (ours, ErrStalled, context errors)
// pass through.
func classify(err error) error {
	if err == nil || hasMeaning(err) {
		return err
	}
	var te *transport.Error
	if errors.As(err, &te) {
		switch {
		case te.StatusCode == http.StatusUnauthorized || hasCode(te, transport.UnauthorizedErrorCode):
			return fmt.Errorf("%w: %w", err, errdefs.ErrUnauthenticated)
		case te.StatusCode == http.StatusForbidden || hasCode(te, transport.DeniedErrorCode):
			return fmt.Errorf("%w: %w", err, errdefs.ErrPermissionDenied)
		case te.StatusCode == http.StatusNotFound || hasCode(te, transport.ManifestUnknownErrorCode) ||
			hasCode(te, transport.NameUnknownErrorCode) || hasCode(te, transport.BlobUnknownErrorCode):
			return fmt.Errorf("%w: %w", err, errdefs.ErrNotFound)
		case te.StatusCode == http.StatusTooManyRequests || te.StatusCode >= 500:
			return fmt.Errorf("%w: %w", err, errdefs.ErrUnavailable)
		}
		return err
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return fmt.Errorf("%w: %w", err, errdefs.ErrUnavailable)
	}
	return err
}

func hasCode(te *transport.Error, code transport.ErrorCode) bool {
	for _, d := range te.Errors {
		if d.Code == code {
			return true
		}
	}
	return false
}

func hasMeaning(err error) bool {
	return errors.Is(err, ErrStalled) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		errdefs.IsInvalidArgument(err) || errdefs.IsNotFound(err) || errdefs.IsDataLoss(err) ||
		errdefs.IsUnauthorized(err) || errdefs.IsPermissionDenied(err) || errdefs.IsUnavailable(err) ||
		errdefs.IsNotImplemented(err) || errdefs.IsFailedPrecondition(err) || errdefs.IsResourceExhausted(err)
}

// hostError is one host's failure during a pull.
type hostError struct {
	host string
	err  error
}

// errorRank orders failures from different hosts: the returned error is the
// most telling one, so a mirror that is merely down does not hide that the
// registry refused the credentials or served corrupt data. A host that
// answered "not found" outranks only one that could not be reached.
func errorRank(err error) int {
	switch {
	case errdefs.IsDataLoss(err):
		return 7
	case errdefs.IsUnauthorized(err):
		return 6
	case errdefs.IsPermissionDenied(err):
		return 5
	case errors.Is(err, ErrStalled):
		return 4
	case errdefs.IsInvalidArgument(err), errdefs.IsNotImplemented(err):
		return 3
	case errdefs.IsNotFound(err):
		return 1
	case errdefs.IsUnavailable(err):
		return 0
	default:
		return 2
	}
}

// joinHostErrors returns the most telling error, wrapped, with every host's
// failure in the message.
func joinHostErrors(errs []hostError) error {
	if len(errs) == 0 {
		return fmt.Errorf("no registry host to try: %w", errdefs.ErrNotFound)
	}
	best := 0
	for i, e := range errs {
		if errorRank(e.err) > errorRank(errs[best].err) {
			best = i
		}
	}
	if len(errs) == 1 {
		return fmt.Errorf("%s: %w", errs[0].host, errs[0].err)
	}
	var others []string
	for i, e := range errs {
		if i != best {
			others = append(others, e.host+": "+e.err.Error())
		}
	}
	return fmt.Errorf("%s: %w (also tried %s)", errs[best].host, errs[best].err, strings.Join(others, "; "))
}
