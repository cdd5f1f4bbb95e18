package edgectl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/spf13/cobra"
)

// waitPollInterval is how often wait reads the objects again.
const waitPollInterval = 200 * time.Millisecond

type waitOptions struct {
	*options
	forCond string
	timeout time.Duration
}

// waitCondition is a parsed --for.
type waitCondition struct {
	deleted   bool
	condType  string // condition=TYPE[=VALUE]
	condValue string
	path      *jsonPath // jsonpath={...}[=VALUE]
	pathValue string
	hasValue  bool
}

func newWaitCmd(o *options) *cobra.Command {
	w := &waitOptions{options: o}
	cmd := &cobra.Command{
		Use:   "wait KIND/NAME... --for=condition=TYPE[=VALUE]|delete|jsonpath='{...}'=VALUE",
		Short: "Wait until objects meet a condition",
		Example: `  edgectl wait --for=condition=Ready pod/hello --timeout=60s
  edgectl wait --for=delete pod/hello
  edgectl wait --for=jsonpath='{.status.phase}'=Running pod/hello`,
		RunE: func(cmd *cobra.Command, args []string) error {
			cond, err := parseWaitFor(w.forCond)
			if err != nil {
				return usageErrorf(cmd, "%v", err)
			}
			targets, _, err := parseResourceArgs(args)
			if err != nil {
				return usageErrorf(cmd, "%v", err)
			}
			var refs []ref
			for _, t := range targets {
				if len(t.Names) == 0 {
					return usageErrorf(cmd, "give the objects to wait for by name: KIND/NAME or KIND NAME")
				}
				for _, n := range t.Names {
					refs = append(refs, ref{kind: t.Kind, namespace: namespaceFor(t.Kind, w.namespace), name: n})
				}
			}
			return w.run(cmd.Context(), cond, refs)
		},
	}
	f := cmd.Flags()
	f.StringVar(&w.forCond, "for", "", "condition=TYPE[=VALUE], delete, or jsonpath='{.path}'[=VALUE]")
	f.DurationVar(&w.timeout, "timeout", 30*time.Second, "how long to wait; 0 checks once")
	return cmd
}

// parseWaitFor reads --for.
func parseWaitFor(s string) (waitCondition, error) {
	var c waitCondition
	switch {
	case s == "":
		return c, fmt.Errorf("--for is required: condition=TYPE[=VALUE], delete or jsonpath='{...}'=VALUE")
	case strings.EqualFold(s, "delete"):
		c.deleted = true
		return c, nil
	case strings.HasPrefix(s, "condition="):
		rest := strings.TrimPrefix(s, "condition=")
		typ, value, ok := strings.Cut(rest, "=")
		if typ == "" {
			return c, fmt.Errorf("--for=%s: condition type is empty", s)
		}
		c.condType, c.condValue = typ, manifests.ConditionTrue
		if ok {
			c.condValue = value
		}
		return c, nil
	case strings.HasPrefix(s, "jsonpath="):
		rest := strings.TrimPrefix(s, "jsonpath=")
		expr, value := rest, ""
		hasValue := false
		if strings.HasPrefix(rest, "{") {
			end := strings.Index(rest, "}")
			if end < 0 {
				return c, fmt.Errorf("--for=%s: unclosed '{'", s)
			}
			expr = rest[:end+1]
			if tail := rest[end+1:]; tail != "" {
				if !strings.HasPrefix(tail, "=") {
					return c, fmt.Errorf("--for=%s: want jsonpath='{...}'=VALUE", s)
				}
				value, hasValue = tail[1:], true
			}
		} else if e, v, ok := strings.Cut(rest, "="); ok {
			expr, value, hasValue = e, v, true
		}
		p, err := parseJSONPath(expr)
		if err != nil {
			return c, err
		}
		c.path, c.pathValue, c.hasValue = &p, value, hasValue
		return c, nil
	}
	return c, fmt.Errorf("--for=%s: unrecognized condition; want condition=TYPE[=VALUE], delete or jsonpath='{...}'=VALUE", s)
}

// met reports whether obj satisfies the condition (obj nil = absent).
func (c waitCondition) met(obj manifests.Object) (bool, error) {
	if c.deleted {
		return obj == nil, nil
	}
	if obj == nil {
		return false, nil
	}
	data, err := json.Marshal(obj)
	if err != nil {
		return false, fmt.Errorf("encode %s: %w", objectName(obj), err)
	}
	var doc any
	if err := json.Unmarshal(data, &doc); err != nil {
		return false, fmt.Errorf("decode %s: %w", objectName(obj), err)
	}
	if c.path != nil {
		vals := c.path.eval(doc)
		if !c.hasValue {
			return len(vals) > 0, nil
		}
		return len(vals) == 1 && formatValue(vals[0]) == c.pathValue, nil
	}
	m, _ := doc.(map[string]any)
	status, _ := m["status"].(map[string]any)
	conds, _ := status["conditions"].([]any)
	for _, e := range conds {
		cond, _ := e.(map[string]any)
		if t, _ := cond["type"].(string); strings.EqualFold(t, c.condType) {
			s, _ := cond["status"].(string)
			return strings.EqualFold(s, c.condValue), nil
		}
	}
	return false, nil
}

func (w *waitOptions) run(ctx context.Context, cond waitCondition, refs []ref) error {
	cl, err := w.client(ctx)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(w.timeout)
	for _, r := range refs {
		if err := w.waitOne(ctx, cl, cond, r, deadline); err != nil {
			return err
		}
		fmt.Fprintf(w.streams.Out, "%s/%s condition met\n", qualifiedSingular(r.kind), r.name)
	}
	return nil
}

// waitOne polls the object until cond holds or the deadline passes; a zero
// or negative --timeout checks once.
func (w *waitOptions) waitOne(ctx context.Context, cl *client.Client, cond waitCondition, r ref, deadline time.Time) error {
	for {
		ok, err := w.check(ctx, cl, cond, r)
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("timed out waiting for the condition on %s/%s", r.kind.Resource, r.name)
		}
		t := time.NewTimer(min(left, waitPollInterval))
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("wait for %s/%s: %w", r.kind.Resource, r.name, ctx.Err())
		case <-t.C:
		}
	}
}

// check reads the object once. An absent object is waited for (it may not
// be created yet), as is a server that is briefly unreachable.
func (w *waitOptions) check(ctx context.Context, cl *client.Client, cond waitCondition, r ref) (bool, error) {
	rctx, cancel := w.reqCtx(ctx)
	obj, err := cl.Get(rctx, r.kind.Resource, r.namespace, r.name)
	cancel()
	switch {
	case err == nil:
		return cond.met(obj)
	case client.IsNotFound(err):
		return cond.met(nil)
	case ctx.Err() == nil && (client.CodeOf(err) == client.CodeUnavailable || errors.Is(err, context.DeadlineExceeded)):
		return false, nil
	}
	return false, err
}
