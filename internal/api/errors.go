package api

import (
	"context"
	"errors"
	"net/http"

	"github.com/dsrd/dsrd/raft"
)

// Errors a Backend wraps (with %w) so that the API answers with the right
// status; raft.ErrNotLeader and raft.ErrUnknownReal are understood too.
var (
	// ErrInvalid marks a request refused as malformed: a bad admin state,
	// address or member ID (400).
	ErrInvalid = errors.New("invalid request")
	// ErrNotFound marks an unknown service, real or member (404).
	ErrNotFound = errors.New("not found")
	// ErrForbidden marks a peer request its proven identity may not make
	// (403); raft.ErrRefused is one.
	ErrForbidden = errors.New("forbidden")
	// ErrConflict refuses a request the cluster's state does not allow
	// now (409): a second drain while a director is drained
	// (raft.ErrDrainBusy), a drain that would leave a VIP unannounced.
	ErrConflict = errors.New("conflict")
)

// Error codes of ErrorResponse: what a client maps an answer back to.
const (
	// CodeInvalid is ErrInvalid, and a request the server could not decode.
	CodeInvalid = "invalid"
	// CodeNotFound is ErrNotFound.
	CodeNotFound = "not_found"
	// CodeUnknownReal is raft.ErrUnknownReal.
	CodeUnknownReal = "unknown_real"
	// CodeNotLeader is raft.ErrNotLeader: 421 from a peer server, 409 from
	// the local API (the backend could not forward to a leader).
	CodeNotLeader = "not_leader"
	// CodeForbidden is ErrForbidden and raft.ErrRefused (403).
	CodeForbidden = "forbidden"
	// CodeConflict is ErrConflict and raft.ErrDrainBusy (409).
	CodeConflict = "conflict"
	// CodeTimeout is context.DeadlineExceeded: the operation's outcome is
	// unknown (504).
	CodeTimeout = "timeout"
	// CodeInternal is any other failure (500).
	CodeInternal = "internal"
)

// ErrorResponse is the JSON body of every error answer of the local API and
// of the peer protocol.
type ErrorResponse struct {
	Error string `json:"error"`
	Code  string `json:"code,omitempty"`
	// LeaderID and LeaderAddress name the leader with CodeNotLeader, when
	// one is known.
	LeaderID      string `json:"leader_id,omitempty"`
	LeaderAddress string `json:"leader_address,omitempty"`
}

// Error is an error answer as a client receives it. It matches, with
// errors.Is and errors.As, what the server's error matched: ErrInvalid,
// ErrNotFound, raft.ErrUnknownReal, context.DeadlineExceeded, and for
// CodeNotLeader raft.ErrNotLeader and a *raft.NotLeaderError naming the
// leader.
type Error struct {
	// StatusCode is the HTTP status of the answer.
	StatusCode int
	ErrorResponse
}

// Error returns the server's message.
func (e *Error) Error() string { return e.ErrorResponse.Error }

// Unwrap returns the error the code stands for, nil for CodeInternal.
func (e *Error) Unwrap() error {
	switch e.Code {
	case CodeInvalid:
		return ErrInvalid
	case CodeNotFound:
		return ErrNotFound
	case CodeForbidden:
		return ErrForbidden
	case CodeUnknownReal:
		return raft.ErrUnknownReal
	case CodeNotLeader:
		return &raft.NotLeaderError{LeaderID: e.LeaderID, LeaderAddress: e.LeaderAddress}
	case CodeTimeout:
		return context.DeadlineExceeded
	case CodeConflict:
		return ErrConflict
	}
	return nil
}

// Is makes an unknown real an ErrNotFound too, and a conflict a
// raft.ErrDrainBusy (the only conflict a peer answers).
func (e *Error) Is(target error) bool {
	return e.Code == CodeUnknownReal && target == ErrNotFound ||
		e.Code == CodeConflict && target == raft.ErrDrainBusy
}

// errorResponse maps err to a status and body; notLeader is the status of
// raft.ErrNotLeader (421 on the peer protocol, 409 on the local API).
func errorResponse(err error, notLeader int) (int, ErrorResponse) {
	body := ErrorResponse{Error: err.Error()}
	var nle *raft.NotLeaderError
	switch {
	case errors.Is(err, ErrInvalid), errors.Is(err, raft.ErrInvalidSpec):
		body.Code = CodeInvalid
		return http.StatusBadRequest, body
	case errors.Is(err, ErrForbidden), errors.Is(err, raft.ErrRefused):
		body.Code = CodeForbidden
		return http.StatusForbidden, body
	case errors.Is(err, raft.ErrUnknownReal):
		body.Code = CodeUnknownReal
		return http.StatusNotFound, body
	case errors.Is(err, ErrNotFound):
		body.Code = CodeNotFound
		return http.StatusNotFound, body
	case errors.Is(err, raft.ErrNotLeader):
		body.Code = CodeNotLeader
		if errors.As(err, &nle) {
			body.LeaderID, body.LeaderAddress = nle.LeaderID, nle.LeaderAddress
		}
		return notLeader, body
	case errors.Is(err, ErrConflict), errors.Is(err, raft.ErrDrainBusy):
		body.Code = CodeConflict
		return http.StatusConflict, body
	case errors.Is(err, context.DeadlineExceeded):
		body.Code = CodeTimeout
		return http.StatusGatewayTimeout, body
	}
	body.Code = CodeInternal
	return http.StatusInternalServerError, body
}
