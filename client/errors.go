package client

import (
	"errors"
	"fmt"
)

// StatusError is an API error with a code (NotFound, Conflict, Invalid, ...).
type StatusError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *StatusError) Error() string { return e.Message }

// Errorf builds a StatusError.
func Errorf(code, format string, args ...any) *StatusError {
	return &StatusError{Code: code, Message: fmt.Sprintf(format, args...)}
}

// CodeOf returns the code of an API error, or "" when err is not one.
func CodeOf(err error) string {
	var se *StatusError
	if errors.As(err, &se) {
		return se.Code
	}
	return ""
}

// IsNotFound reports whether err is a NotFound API error.
func IsNotFound(err error) bool { return CodeOf(err) == CodeNotFound }

// IsConflict reports whether err is a Conflict API error.
func IsConflict(err error) bool { return CodeOf(err) == CodeConflict }

// IsInvalid reports whether err is an Invalid API error.
func IsInvalid(err error) bool { return CodeOf(err) == CodeInvalid }
