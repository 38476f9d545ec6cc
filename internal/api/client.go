package api

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"syscall"
	"time"
)

// ErrNotRunning means that no director or witness answers on the socket.
var ErrNotRunning = errors.New("no dsrd director or witness is running here")

// SocketError is a failure to reach the local API's socket, with a message
// that says what to do about it. It matches ErrNotRunning when no daemon
// answers there, and fs.ErrPermission when the caller may not use it.
type SocketError struct {
	Path string
	Err  error
}

// Error implements error.
func (e *SocketError) Error() string {
	switch {
	case errors.Is(e.Err, fs.ErrNotExist):
		return fmt.Sprintf("%v (no socket at %s)", ErrNotRunning, e.Path)
	case errors.Is(e.Err, syscall.ECONNREFUSED):
		return fmt.Sprintf("%v (nothing answers on %s)", ErrNotRunning, e.Path)
	case errors.Is(e.Err, fs.ErrPermission):
		return fmt.Sprintf("permission denied on %s: run as root", e.Path)
	}
	return fmt.Sprintf("connect to %s: %v", e.Path, e.Err)
}

// Unwrap returns the connect error.
func (e *SocketError) Unwrap() error { return e.Err }

// Is makes a missing socket, or one nothing answers on, ErrNotRunning.
func (e *SocketError) Is(target error) bool {
	return target == ErrNotRunning &&
		(errors.Is(e.Err, fs.ErrNotExist) || errors.Is(e.Err, syscall.ECONNREFUSED))
}

// Client calls the local API of the director or witness on a unix socket.
// Its methods mirror Backend (it implements it) and are bounded by ctx; a
// socket that cannot be reached is a *SocketError, an error answer an
// *Error matching what the server's error matched.
type Client struct {
	socket string
	hc     *http.Client
}

var _ Backend = (*Client)(nil)

// NewClient returns a client of the API on the unix socket at path.
func NewClient(path string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, "unix", path)
			if err != nil {
				return nil, &SocketError{Path: path, Err: err}
			}
			return c, nil
		},
		MaxIdleConns:       1,
		IdleConnTimeout:    10 * time.Second,
		DisableCompression: true,
	}
	return &Client{socket: path, hc: &http.Client{Transport: tr}}
}

// Socket returns the socket's path.
func (c *Client) Socket() string { return c.socket }

// Close closes the client's idle connection.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	err := roundTrip(ctx, c.hc, "http://dsrd", method, path, in, out)
	var se *SocketError
	if errors.As(err, &se) {
		return se
	}
	return err
}

// Status returns the node's status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	err := c.do(ctx, http.MethodGet, "/v1/status", nil, &st)
	return st, err
}

// StatusWithPeers returns the node's status with the other members'
// running generations (Status.Peers).
func (c *Client) StatusWithPeers(ctx context.Context) (Status, error) {
	var st Status
	err := c.do(ctx, http.MethodGet, "/v1/status?peers=1", nil, &st)
	return st, err
}

// StatusTop is StatusWithPeers with each service's top sources dropped
// by its admission control: at most top (capped at MaxTop by the server).
func (c *Client) StatusTop(ctx context.Context, top int) (Status, error) {
	var st Status
	err := c.do(ctx, http.MethodGet, "/v1/status?peers=1&top="+strconv.Itoa(top), nil, &st)
	return st, err
}

// SetAdmin sets a real's admin state.
func (c *Client) SetAdmin(ctx context.Context, req AdminRequest) (AdminResult, error) {
	var res AdminResult
	err := c.do(ctx, http.MethodPost, "/v1/admin", req, &res)
	return res, err
}

// Failover hands leadership over, to member to when set.
func (c *Client) Failover(ctx context.Context, to string) (FailoverResult, error) {
	var res FailoverResult
	err := c.do(ctx, http.MethodPost, "/v1/failover", FailoverRequest{To: to}, &res)
	return res, err
}

// DrainBGP drains (or undrains) the director's BGP announcements.
func (c *Client) DrainBGP(ctx context.Context, req BGPDrainRequest) (BGPDrainResult, error) {
	var res BGPDrainResult
	err := c.do(ctx, http.MethodPost, "/v1/bgp/drain", req, &res)
	return res, err
}

// Reload makes the daemon re-read its configuration file.
func (c *Client) Reload(ctx context.Context) (ReloadResult, error) {
	var res ReloadResult
	err := c.do(ctx, http.MethodPost, "/v1/reload", nil, &res)
	return res, err
}

// Members lists the Raft configuration.
func (c *Client) Members(ctx context.Context) ([]Member, error) {
	var ms []Member
	err := c.do(ctx, http.MethodGet, "/v1/members", nil, &ms)
	return ms, err
}

// Join adds a member to the cluster.
func (c *Client) Join(ctx context.Context, req JoinRequest) error {
	return c.do(ctx, http.MethodPost, "/v1/members", req, nil)
}

// Remove removes member id from the cluster.
func (c *Client) Remove(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/v1/members/"+url.PathEscape(id), nil, nil)
}
