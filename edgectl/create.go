package edgectl

import (
	"fmt"
	"strings"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/spf13/cobra"

	// apply validates a CronJob's spec.timeZone before sending it: carry
	// the IANA database so that a laptop without one (Windows) accepts
	// what the control plane accepts (about 410 KB, measured).
	_ "time/tzdata"
)

// InstantiateAnnotation marks a Job created by hand from a CronJob
// (kubectl's cronjob.kubernetes.io/instantiate: manual).
const InstantiateAnnotation = "cronjob.kubernetes.io/instantiate"

func newCreateCmd(o *options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create an object from another one (a Job from a CronJob)",
	}
	var from string
	job := &cobra.Command{
		Use:   "job NAME --from=cronjob/NAME",
		Short: "Run a CronJob's job template now, as a Job named NAME",
		Long: `Create a Job named NAME from a CronJob's spec.jobTemplate, as kubectl does: the
template's labels and annotations, annotation cronjob.kubernetes.io/instantiate=manual,
owned by the CronJob (so it counts as its active Job and is deleted with it).`,
		Example: `  edgectl create job backup-now --from=cronjob/backup`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageErrorf(cmd, "exactly one NAME is required, got %d", len(args))
			}
			name := args[0]
			kindName, cjName, ok := strings.Cut(from, "/")
			if !ok || cjName == "" {
				return usageErrorf(cmd, "--from=%q: want cronjob/NAME", from)
			}
			if k, err := manifests.KindForResource(kindName); err != nil || k.Kind != "CronJob" {
				return usageErrorf(cmd, "--from=%q: only a cronjob can be the source of a job", from)
			}
			c, err := o.client(cmd.Context())
			if err != nil {
				return err
			}
			ctx, cancel := o.reqCtx(cmd.Context())
			defer cancel()
			obj, err := c.Get(ctx, "cronjobs", o.namespace, cjName)
			if err != nil {
				return fmt.Errorf("get cronjob %s: %w", cjName, err)
			}
			j, err := JobFromCronJob(obj.(*manifests.CronJob), name)
			if err != nil {
				return err
			}
			if _, err := c.Get(ctx, "jobs", o.namespace, name); err == nil {
				return client.Errorf(client.CodeExists, "jobs.batch %q already exists", name)
			} else if !client.IsNotFound(err) {
				return fmt.Errorf("check job %s: %w", name, err)
			}
			if _, _, err := c.Apply(ctx, j); err != nil {
				return fmt.Errorf("create job %s: %w", name, err)
			}
			fmt.Fprintf(o.streams.Out, "job.batch/%s created\n", name)
			return nil
		},
	}
	job.Flags().StringVar(&from, "from", "", "the CronJob whose job template to run: cronjob/NAME")
	_ = job.MarkFlagRequired("from")
	cmd.AddCommand(job)
	return cmd
}

// JobFromCronJob returns the Job named name that runs cj's job template
// now.
func JobFromCronJob(cj *manifests.CronJob, name string) (*manifests.Job, error) {
	ref, err := manifests.NewControllerRef(cj)
	if err != nil {
		return nil, err
	}
	t := manifests.DeepCopy(&manifests.Job{ObjectMeta: cj.Spec.JobTemplate.ObjectMeta, Spec: cj.Spec.JobTemplate.Spec}).(*manifests.Job)
	ann := map[string]string{InstantiateAnnotation: "manual"}
	for k, v := range t.Annotations {
		ann[k] = v
	}
	return &manifests.Job{
		TypeMeta: manifests.TypeMeta{APIVersion: "batch/v1", Kind: "Job"},
		ObjectMeta: manifests.ObjectMeta{
			Name: name, Namespace: cj.Namespace, Labels: t.Labels, Annotations: ann,
			OwnerReferences: []manifests.OwnerReference{ref},
		},
		Spec: t.Spec,
	}, nil
}
