package bridge

import (
	"errors"

	"github.com/containernetworking/cni/pkg/types"
)

// Error carries a CNI error code with the error that caused it.
type Error struct {
	Code uint
	Err  error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// withCode tags err with a CNI code unless it already has one.
func withCode(code uint, err error) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	return &Error{Code: code, Err: err}
}

// toCNI turns an error into the *types.Error skel prints as the spec's JSON
// (skel only recognises that exact type). Errors without a code are internal.
func toCNI(err error) error {
	if err == nil {
		return nil
	}
	code := types.ErrInternal
	var e *Error
	if errors.As(err, &e) {
		code = e.Code
	}
	return types.NewError(code, err.Error(), "")
}
