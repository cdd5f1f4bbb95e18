package edgectl

import (
	"fmt"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/spf13/cobra"
)

// newAutoscaleCmd is kubectl autoscale: it creates an autoscaling/v2
// HorizontalPodAutoscaler for a Deployment, ReplicaSet or StatefulSet.
func newAutoscaleCmd(o *options) *cobra.Command {
	var (
		minR, maxR, cpu int32
		name            string
	)
	cmd := &cobra.Command{
		Use:   "autoscale (deployment|replicaset|statefulset)/NAME --max=MAXPODS [--min=MINPODS] [--cpu-percent=CPU]",
		Short: "Create a HorizontalPodAutoscaler for a Deployment, ReplicaSet or StatefulSet",
		Long: `Create a HorizontalPodAutoscaler (autoscaling/v2) that keeps the average CPU usage of the
target's pods at --cpu-percent of their CPU request (80 % when not given), between --min
(1 when not given) and --max replicas. The pods must request CPU. See docs/autoscaling.md.`,
		Example: `  edgectl autoscale deployment web --min=2 --max=10 --cpu-percent=50
  edgectl autoscale statefulset/db --max=3`,
		RunE: func(cmd *cobra.Command, args []string) error {
			k, target, err := parseWorkloadArg(cmd, args, "Deployment", "ReplicaSet", "StatefulSet")
			if err != nil {
				return err
			}
			if !cmd.Flags().Changed("max") {
				return usageErrorf(cmd, "--max=MAXPODS is required")
			}
			if maxR < 1 {
				return usageErrorf(cmd, "--max=MAXPODS must be at least 1, got %d", maxR)
			}
			if cmd.Flags().Changed("min") && minR > maxR {
				return usageErrorf(cmd, "--max=MAXPODS (%d) must be larger or equal to --min=MINPODS (%d)", maxR, minR)
			}
			if cmd.Flags().Changed("cpu-percent") && cpu < 1 {
				return usageErrorf(cmd, "--cpu-percent must be at least 1, got %d", cpu)
			}
			if name == "" {
				name = target
			}
			h := &manifests.HorizontalPodAutoscaler{ObjectMeta: manifests.ObjectMeta{Name: name, Namespace: o.namespace}}
			h.Spec.ScaleTargetRef = manifests.CrossVersionObjectReference{APIVersion: k.APIVersion, Kind: k.Kind, Name: target}
			h.Spec.MaxReplicas = maxR
			if cmd.Flags().Changed("min") {
				h.Spec.MinReplicas = &minR
			}
			if cmd.Flags().Changed("cpu-percent") {
				h.Spec.Metrics = []manifests.MetricSpec{{Type: manifests.ResourceMetricSourceType, Resource: &manifests.ResourceMetricSource{
					Name: "cpu", Target: manifests.MetricTarget{Type: manifests.UtilizationMetricType, AverageUtilization: &cpu}}}}
			}
			manifests.Default(h)
			if err := manifests.Validate(h); err != nil {
				return fmt.Errorf("horizontalpodautoscaler %q: %w", name, err)
			}
			c, err := o.client(cmd.Context())
			if err != nil {
				return err
			}
			ctx, cancel := o.reqCtx(cmd.Context())
			defer cancel()
			if _, err := c.Get(ctx, k.Resource, o.namespace, target); err != nil {
				return fmt.Errorf("get %s %s: %w", k.Singular, target, err)
			}
			if _, err := c.Get(ctx, "horizontalpodautoscalers", o.namespace, name); err == nil {
				return client.Errorf(client.CodeExists, "horizontalpodautoscalers.autoscaling %q already exists", name)
			} else if !client.IsNotFound(err) {
				return fmt.Errorf("check horizontalpodautoscaler %s: %w", name, err)
			}
			if _, _, err := c.Apply(ctx, h); err != nil {
				return fmt.Errorf("create horizontalpodautoscaler %s: %w", name, err)
			}
			fmt.Fprintf(o.streams.Out, "horizontalpodautoscaler.autoscaling/%s autoscaled\n", name)
			return nil
		},
	}
	f := cmd.Flags()
	f.Int32Var(&maxR, "max", -1, "the upper limit of the number of pods (required)")
	f.Int32Var(&minR, "min", -1, "the lower limit of the number of pods (1 when not given)")
	f.Int32Var(&cpu, "cpu-percent", -1, "the target average CPU utilization, in percent of the pods' CPU request (80 when not given)")
	f.StringVar(&name, "name", "", "the name of the HorizontalPodAutoscaler (the target's name when not given)")
	return cmd
}
