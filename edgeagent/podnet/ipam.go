package podnet

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
)

// IPAM hands out the addresses of a pod CIDR, one per pod (keyed by an id,
// the sandbox id), persisting them in a JSON file so an agent restart keeps
// every running pod's address. The network address, the gateway (the first
// host address) and the broadcast address are never handed out. Like
// host-local, allocation continues after the last address handed out, so
// a released address is not reused at once.
type IPAM struct {
	mu    sync.Mutex
	path  string
	cidr  *net.IPNet
	state ipamState
}

type ipamState struct {
	CIDR string `json:"cidr"`
	// IPs maps an allocated address to its owner id.
	IPs  map[string]string `json:"ips"`
	Last string            `json:"last,omitempty"`
}

// NewIPAM loads (or starts) the allocations of cidr kept in file. State
// recorded for another CIDR is discarded.
func NewIPAM(file string, cidr *net.IPNet) (*IPAM, error) {
	if cidr.IP.To4() == nil {
		return nil, fmt.Errorf("ipam: %s: only IPv4 pod CIDRs are supported", cidr)
	}
	if ones, bits := cidr.Mask.Size(); bits-ones < 2 {
		return nil, fmt.Errorf("ipam: %s: too small for a pod network", cidr)
	}
	m := &IPAM{path: file, cidr: &net.IPNet{IP: cidr.IP.Mask(cidr.Mask).To4(), Mask: cidr.Mask}}
	raw, err := os.ReadFile(file)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("ipam: %w", err)
	default:
		if err := json.Unmarshal(raw, &m.state); err != nil {
			return nil, fmt.Errorf("ipam: decode %s: %w", file, err)
		}
	}
	if m.state.CIDR != m.cidr.String() {
		m.state = ipamState{CIDR: m.cidr.String()}
	}
	if m.state.IPs == nil {
		m.state.IPs = map[string]string{}
	}
	return m, nil
}

// Gateway is the first host address of the CIDR.
func (m *IPAM) Gateway() net.IP { return addInt(m.cidr.IP, 1) }

// CIDR is the pod CIDR the addresses come from.
func (m *IPAM) CIDR() *net.IPNet { return m.cidr }

// Get returns the address allocated to id, or nil.
func (m *IPAM) Get(id string) net.IP {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lookup(id)
}

func (m *IPAM) lookup(id string) net.IP {
	for ip, owner := range m.state.IPs {
		if owner == id {
			return net.ParseIP(ip).To4()
		}
	}
	return nil
}

// Allocate returns id's address, allocating a free one if it has none.
func (m *IPAM) Allocate(id string) (net.IP, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if ip := m.lookup(id); ip != nil {
		return ip, nil
	}
	ones, bits := m.cidr.Mask.Size()
	size := new(big.Int).Lsh(big.NewInt(1), uint(bits-ones)).Int64()
	first, last := int64(2), size-2 // skip network, gateway; stop before broadcast
	start := first
	if l := net.ParseIP(m.state.Last).To4(); l != nil && m.cidr.Contains(l) {
		start = offset(m.cidr.IP, l) + 1
	}
	n := last - first + 1
	for i := int64(0); i < n; i++ {
		off := first + (start-first+i)%n
		ip := addInt(m.cidr.IP, off)
		if _, used := m.state.IPs[ip.String()]; used {
			continue
		}
		m.state.IPs[ip.String()] = id
		prevLast := m.state.Last
		m.state.Last = ip.String()
		if err := m.save(); err != nil {
			delete(m.state.IPs, ip.String())
			m.state.Last = prevLast
			return nil, err
		}
		return ip, nil
	}
	return nil, fmt.Errorf("ipam: no free address in %s", m.cidr)
}

// Release frees id's address; releasing an id without one succeeds.
func (m *IPAM) Release(id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	ip := m.lookup(id)
	if ip == nil {
		return nil
	}
	delete(m.state.IPs, ip.String())
	if err := m.save(); err != nil {
		m.state.IPs[ip.String()] = id
		return err
	}
	return nil
}

// Allocated returns a copy of the address → owner map.
func (m *IPAM) Allocated() map[string]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]string, len(m.state.IPs))
	for k, v := range m.state.IPs {
		out[k] = v
	}
	return out
}

// save writes the state atomically (temp file and rename).
func (m *IPAM) save() error {
	raw, err := json.Marshal(&m.state)
	if err != nil {
		return fmt.Errorf("ipam: encode: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(m.path), 0o755); err != nil {
		return fmt.Errorf("ipam: %w", err)
	}
	tmp := m.path + ".tmp"
	if err := os.WriteFile(tmp, raw, 0o644); err != nil {
		return fmt.Errorf("ipam: %w", err)
	}
	if err := os.Rename(tmp, m.path); err != nil {
		return fmt.Errorf("ipam: %w", err)
	}
	return nil
}

func addInt(ip net.IP, n int64) net.IP {
	v := new(big.Int).SetBytes(ip.To4())
	v.Add(v, big.NewInt(n))
	b := v.Bytes()
	out := make(net.IP, 4)
	copy(out[4-len(b):], b)
	return out
}

func offset(base, ip net.IP) int64 {
	a := new(big.Int).SetBytes(base.To4())
	b := new(big.Int).SetBytes(ip.To4())
	return b.Sub(b, a).Int64()
}
