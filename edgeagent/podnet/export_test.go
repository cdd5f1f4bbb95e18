package podnet

import "github.com/vishvananda/netlink"

// LinkList lists h's links, read again if the kernel interrupted the dump.
func LinkList(h *netlink.Handle) ([]netlink.Link, error) { return dump(h.LinkList) }
