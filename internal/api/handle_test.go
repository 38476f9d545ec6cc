package api

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// echoRequest and echoResult are the request and answer of the routes of
// TestHandle.
type echoRequest struct {
	N int `json:"n"`
}

type echoResult struct {
	N int `json:"n"`
}

// TestHandle: the generic handler of every route decodes the body within
// its limit, checks it, bounds the call by the route's timeout, and maps
// each failure to its status and code.
func TestHandle(t *testing.T) {
	fail := func(w http.ResponseWriter, r *http.Request, err error) {
		writeError(w, slog.New(slog.DiscardHandler), r, err, http.StatusConflict)
	}
	echo := func(_ context.Context, _ *http.Request, req echoRequest) (echoResult, error) {
		return echoResult(req), nil
	}
	positive := func(req echoRequest) error {
		if req.N <= 0 {
			return fmt.Errorf("%w: n must be positive", ErrInvalid)
		}
		return nil
	}
	// untilDeadline returns when the call's deadline passes, as a raft
	// operation that does not commit in time does.
	untilDeadline := func(ctx context.Context, _ *http.Request, _ echoRequest) (echoResult, error) {
		if _, ok := ctx.Deadline(); !ok {
			return echoResult{}, fmt.Errorf("the call has no deadline")
		}
		<-ctx.Done()
		return echoResult{}, fmt.Errorf("commit: %w", ctx.Err())
	}
	tests := []struct {
		name    string
		limit   int64
		timeout time.Duration
		check   func(echoRequest) error
		call    func(context.Context, *http.Request, echoRequest) (echoResult, error) // echo when nil
		status  int
		body    string
		// wantStatus is the answer's status; wantBody its exact body, or
		// wantCode and wantError (a substring) the ErrorResponse's. A 400
		// must not reach the call.
		wantStatus int
		wantBody   string
		wantCode   string
		wantError  string
	}{
		{name: "success", limit: 64, status: http.StatusOK, body: `{"n":3}`,
			wantStatus: http.StatusOK, wantBody: `{"n":3}` + "\n"},
		{name: "created", limit: 64, status: http.StatusCreated, body: `{"n":3}`,
			wantStatus: http.StatusCreated, wantBody: `{"n":3}` + "\n"},
		{name: "no content", limit: 64, status: http.StatusNoContent, body: `{"n":3}`,
			wantStatus: http.StatusNoContent, wantBody: ""},
		{name: "no body: the zero request", limit: 64, status: http.StatusOK, body: ``,
			wantStatus: http.StatusOK, wantBody: `{"n":0}` + "\n"},
		{name: "a route without a body leaves it unread", limit: noBody, status: http.StatusOK, body: `not json`,
			wantStatus: http.StatusOK, wantBody: `{"n":0}` + "\n"},
		{name: "bad body", limit: 64, status: http.StatusOK, body: `{"n":`,
			wantStatus: http.StatusBadRequest, wantCode: CodeInvalid, wantError: "decode request body"},
		{name: "wrong type", limit: 64, status: http.StatusOK, body: `{"n":"three"}`,
			wantStatus: http.StatusBadRequest, wantCode: CodeInvalid, wantError: "decode request body"},
		{name: "trailing data", limit: 64, status: http.StatusOK, body: `{"n":1} {}`,
			wantStatus: http.StatusBadRequest, wantCode: CodeInvalid, wantError: "trailing data"},
		{name: "body over the limit", limit: 16, status: http.StatusOK, body: `{"n":` + strings.Repeat(" ", 16) + `1}`,
			wantStatus: http.StatusBadRequest, wantCode: CodeInvalid, wantError: "larger than 16 bytes"},
		{name: "refused by the check", limit: 64, check: positive, status: http.StatusOK, body: `{"n":-1}`,
			wantStatus: http.StatusBadRequest, wantCode: CodeInvalid, wantError: "n must be positive"},
		{name: "passed by the check", limit: 64, check: positive, status: http.StatusOK, body: `{"n":1}`,
			wantStatus: http.StatusOK, wantBody: `{"n":1}` + "\n"},
		{name: "timeout", limit: 64, timeout: time.Millisecond, status: http.StatusOK, body: `{"n":1}`,
			call:       untilDeadline,
			wantStatus: http.StatusGatewayTimeout, wantCode: CodeTimeout, wantError: "commit: context deadline exceeded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			call := echo
			if tt.call != nil {
				call = tt.call
			}
			reached := false
			recorded := func(ctx context.Context, r *http.Request, req echoRequest) (echoResult, error) {
				reached = true
				return call(ctx, r, req)
			}
			timeout := tt.timeout
			if timeout == 0 {
				timeout = time.Minute
			}
			h := handle(fail, tt.limit, timeout, tt.check, recorded, tt.status)
			rec := httptest.NewRecorder()
			h(rec, httptest.NewRequest(http.MethodPost, "/test", strings.NewReader(tt.body)))
			if rec.Code != tt.wantStatus {
				t.Fatalf("status %d, want %d (body %q)", rec.Code, tt.wantStatus, rec.Body)
			}
			if reached == (tt.wantStatus == http.StatusBadRequest) {
				t.Errorf("the call ran: %v, want %v", reached, !reached)
			}
			if tt.wantCode == "" {
				if got := rec.Body.String(); got != tt.wantBody {
					t.Errorf("body %q, want %q", got, tt.wantBody)
				}
				return
			}
			var e ErrorResponse
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
				t.Fatalf("the answer is not an ErrorResponse: %v: %q", err, rec.Body)
			}
			if e.Code != tt.wantCode || !strings.Contains(e.Error, tt.wantError) {
				t.Errorf("answer %+v, want code %q and an error containing %q", e, tt.wantCode, tt.wantError)
			}
		})
	}
}

// TestDecodeJSONLimitCoversTrailingSpace: a body over the limit is refused
// however it ends, white space after the value included.
func TestDecodeJSONLimitCoversTrailingSpace(t *testing.T) {
	for body, wantErr := range map[string]bool{
		`{"n":1}`:        false,
		`{"n":1}` + "\n": false,
		`{"n":1}` + strings.Repeat(" ", 16) + `{}`: true,
		`{"n":1}` + strings.Repeat(" ", 32):        true,
	} {
		r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
		var v struct{ N int }
		err := decodeJSON(httptest.NewRecorder(), r, 16, &v)
		if (err != nil) != wantErr {
			t.Errorf("body %q: %v, want error %v", body, err, wantErr)
		}
	}
}
