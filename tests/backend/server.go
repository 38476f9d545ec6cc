package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// shutdownGrace bounds how long HTTP requests in flight may take to finish
// once the server is told to stop; the lab's requests take milliseconds.
const shutdownGrace = 2 * time.Second

// server holds the bound listeners of one backend.
type server struct {
	name string
	log  *slog.Logger
	tcp  []net.Listener
	http []net.Listener
	udp  []net.PacketConn
}

// listen binds every address of cfg; on error nothing stays bound.
func listen(cfg config, log *slog.Logger) (*server, error) {
	s := &server{name: cfg.name, log: log}
	var lc net.ListenConfig
	ctx := context.Background()
	for _, a := range cfg.tcp {
		l, err := lc.Listen(ctx, "tcp", a)
		if err != nil {
			s.close()
			return nil, fmt.Errorf("listen tcp %s: %w", a, err)
		}
		s.tcp = append(s.tcp, l)
	}
	for _, a := range cfg.http {
		l, err := lc.Listen(ctx, "tcp", a)
		if err != nil {
			s.close()
			return nil, fmt.Errorf("listen http %s: %w", a, err)
		}
		s.http = append(s.http, l)
	}
	for _, a := range cfg.udp {
		c, err := lc.ListenPacket(ctx, "udp", a)
		if err != nil {
			s.close()
			return nil, fmt.Errorf("listen udp %s: %w", a, err)
		}
		s.udp = append(s.udp, c)
	}
	return s, nil
}

// addrs lists the bound addresses as "proto address".
func (s *server) addrs() []string {
	var out []string
	for _, l := range s.tcp {
		out = append(out, "tcp "+l.Addr().String())
	}
	for _, l := range s.http {
		out = append(out, "http "+l.Addr().String())
	}
	for _, c := range s.udp {
		out = append(out, "udp "+c.LocalAddr().String())
	}
	return out
}

// close releases every listener.
func (s *server) close() {
	for _, l := range s.tcp {
		l.Close()
	}
	for _, l := range s.http {
		l.Close()
	}
	for _, c := range s.udp {
		c.Close()
	}
}

// serve answers on every listener until ctx is done, then closes them and
// every open connection and returns once all its goroutines have ended.
func (s *server) serve(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, len(s.tcp)+len(s.http)+len(s.udp))
	conns := newConnSet()

	for _, l := range s.tcp {
		s.log.Info("listening", "proto", "tcp", "addr", l.Addr().String())
		wg.Add(1)
		go func() {
			defer wg.Done()
			errc <- s.serveTCP(ctx, l, conns, &wg)
		}()
	}
	httpSrv := &http.Server{Handler: s.handler(), ReadHeaderTimeout: 10 * time.Second}
	for _, l := range s.http {
		s.log.Info("listening", "proto", "http", "addr", l.Addr().String())
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := httpSrv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("serve http %s: %w", l.Addr(), err)
				return
			}
			errc <- nil
		}()
	}
	for _, c := range s.udp {
		s.log.Info("listening", "proto", "udp", "addr", c.LocalAddr().String())
		wg.Add(1)
		go func() {
			defer wg.Done()
			errc <- s.serveUDP(ctx, c)
		}()
	}

	// The first listener to fail stops the others.
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	cancel()
	shutCtx, shutCancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer shutCancel()
	if e := httpSrv.Shutdown(shutCtx); e != nil {
		httpSrv.Close()
	}
	s.close()
	conns.closeAll()
	wg.Wait()
	s.log.Info("stopped")
	return err
}

// serveTCP accepts connections until the listener is closed. Each connection
// goroutine ends when its peer closes it or when conns.closeAll closes it.
func (s *server) serveTCP(ctx context.Context, l net.Listener, conns *connSet, wg *sync.WaitGroup) error {
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("accept tcp %s: %w", l.Addr(), err)
		}
		if !conns.add(c) {
			c.Close()
			return nil
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer conns.remove(c)
			s.echo(c)
		}()
	}
}

// echo greets a TCP client with the name, then echoes its lines.
func (s *server) echo(c net.Conn) {
	defer c.Close()
	if _, err := fmt.Fprintf(c, "%s\n", s.name); err != nil {
		return
	}
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		if _, err := fmt.Fprintf(c, "%s\n", sc.Bytes()); err != nil {
			return
		}
	}
}

// handler serves / with the name and /healthz with 200.
func (s *server) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Client-Addr", r.RemoteAddr)
		fmt.Fprintf(w, "%s\n", s.name)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	return mux
}

// serveUDP answers each datagram with the name until the socket is closed.
// The answer leaves from the address the datagram was sent to (IPV6_PKTINFO
// on the dual-stack socket, which carries IPv4 destinations as v4-mapped
// addresses): behind a direct-routing director a datagram arrives for the
// VIP, and a reply from the real's own address (what the routing table
// picks for a socket bound to the wildcard) is dropped by the client's
// connected socket. UDP servers behind dsrd must do the same, or bind the
// VIPs (docs/operations.md).
func (s *server) serveUDP(ctx context.Context, c net.PacketConn) error {
	buf := make([]byte, 64*1024)
	reply := []byte(s.name + "\n")
	pc := ipv6.NewPacketConn(c)
	withDst := pc.SetControlMessage(ipv6.FlagDst, true) == nil // an IPv4-only socket has no IPV6_RECVPKTINFO
	for {
		var peer net.Addr
		var cm *ipv6.ControlMessage
		var err error
		if withDst {
			_, cm, peer, err = pc.ReadFrom(buf)
		} else {
			_, peer, err = c.ReadFrom(buf)
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("read udp %s: %w", c.LocalAddr(), err)
		}
		uc, isUDP := c.(*net.UDPConn)
		ua, isUDPAddr := peer.(*net.UDPAddr)
		if cm != nil && cm.Dst != nil && isUDP && isUDPAddr {
			// x/net's ipv6 control message leaves out an IPv4 source, so
			// the IPV6_PKTINFO is built here: the kernel takes a v4-mapped
			// address in it as an IPv4 datagram's source.
			var src [16]byte
			copy(src[:], cm.Dst.To16())
			_, _, err = uc.WriteMsgUDP(reply, unix.PktInfo6(&unix.Inet6Pktinfo{Addr: src}), ua)
		} else {
			_, err = c.WriteTo(reply, peer)
		}
		if err != nil {
			s.log.Warn("udp reply failed", "peer", peer.String(), "err", err)
		}
	}
}

// connSet tracks open TCP connections so that shutdown can close them.
type connSet struct {
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

func newConnSet() *connSet { return &connSet{conns: make(map[net.Conn]struct{})} }

// add records c; false once closeAll has run.
func (cs *connSet) add(c net.Conn) bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.closed {
		return false
	}
	cs.conns[c] = struct{}{}
	return true
}

func (cs *connSet) remove(c net.Conn) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	delete(cs.conns, c)
}

// closeAll closes every recorded connection and refuses new ones.
func (cs *connSet) closeAll() {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.closed = true
	for c := range cs.conns {
		c.Close()
	}
}
