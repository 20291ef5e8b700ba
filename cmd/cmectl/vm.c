/* cmectl vm ls | show: what the cluster says about its VMs. */
#include "cmectl.h"

#include <inttypes.h>
#include <string.h>

static const char *desired(const struct cl_vm_view *vv)
{
	if (!vv->has_spec)
		return "deleted";
	return vv->spec.running ? "running" : "stopped";
}

static json_t *mig_brief(const struct cl_vm_view *vv)
{
	if (!vv->has_mig || !cl_migration_pending(&vv->mig))
		return json_null();
	return json_pack("{s:s, s:s, s:s, s:s}", "id", vv->mig.id, "phase", vv->mig.phase, "source",
			 vv->mig.source, "target", vv->mig.target);
}

/* The object `vm ls -o json` prints for one VM. */
static json_t *vm_obj(const struct cl_vm_view *vv)
{
	const char *st = ctl_vm_state(vv);

	return json_pack(
		"{s:s, s:o, s:s, s:o, s:I, s:i, s:I, s:i, s:i, s:s, s:o}", "name", vv->name,
		"state", st ? json_string(st) : json_null(), "desired", desired(vv), "node",
		vv->has_owner ? json_string(vv->owner.node) : json_null(), "epoch",
		(json_int_t)vv->owner.epoch, "vcpus", (int)vv->spec.vcpus, "mem_mb",
		(json_int_t)vv->spec.mem_mb, "pid", vv->status.pid, "restarts",
		(int)vv->status.restarts, "error", vv->status.error, "migration", mig_brief(vv));
}

static void vm_row(struct table *t, const struct cl_vm_view *vv)
{
	bool mig = vv->has_mig && cl_migration_pending(&vv->mig);

	ctl_table_cell(t, "%s", vv->name);
	ctl_table_cell(t, "%s", ctl_out_dash(ctl_vm_state(vv)));
	ctl_table_cell(t, "%s", vv->has_owner ? vv->owner.node : "-");
	if (vv->has_owner)
		ctl_table_cell(t, "%" PRIu64, vv->owner.epoch);
	else
		ctl_table_cell(t, "-");
	ctl_table_cell(t, "%" PRIu32, vv->spec.vcpus);
	ctl_table_cell(t, "%" PRIu64 " MiB", vv->spec.mem_mb);
	if (mig)
		ctl_table_cell(t, "%s → %s", vv->mig.phase, vv->mig.target);
	else
		ctl_table_cell(t, "-");
}

int ctl_cmd_vm_ls(struct ctl *c, int argc, char **argv)
{
	static const char *const hdr[] = { "NAME",  "STATE",  "NODE",	  "EPOCH",
					   "VCPUS", "MEMORY", "MIGRATION" };
	struct cl_view v;
	int rc = ctl_args_parse(c, "vm ls", argc, argv, NULL, NULL, NULL);

	if (rc || (rc = ctl_view(c, &v)))
		return rc;
	if (c->json) {
		json_t *arr = json_array();

		for (size_t i = 0; i < v.nvms; i++)
			json_array_append_new(arr, vm_obj(&v.vms[i]));
		ctl_out_json(arr);
	} else {
		struct table *t = ctl_table_new(ARRAY_SIZE(hdr), hdr);

		for (size_t i = 0; i < v.nvms; i++)
			vm_row(t, &v.vms[i]);
		ctl_table_print(t, stdout);
	}
	cl_view_free(&v);
	return CTL_OK;
}

/* ---- vm show ------------------------------------------------------------------------ */

static void show_spec(const struct cl_spec *s)
{
	char tb[32];

	printf("desired:   %s (restart %s, priority %d, group %s)\n",
	       s->running ? "running" : "stopped", ctl_out_dash(s->restart), s->priority,
	       ctl_out_dash(s->group));
	printf("size:      %" PRIu32 " vCPUs, %" PRIu64 " MiB\n", s->vcpus, s->mem_mb);
	if (s->image[0])
		printf("image:     %s\n", s->image);
	if (s->kernel[0])
		printf("kernel:    %s\n", s->kernel);
	if (s->initrd[0])
		printf("initrd:    %s\n", s->initrd);
	if (s->cmdline[0])
		printf("cmdline:   %s\n", s->cmdline);
	if (s->disk[0])
		printf("disk:      %s\n", s->disk);
	if (s->balloon)
		printf("balloon:   target %" PRIu64 " MiB (desired)\n", s->balloon_mb);
	if (s->pin_vcpus[0] || s->cgroup[0] || s->hugepages || s->ksm)
		printf("resources: pin-vcpus %s, cgroup %s, hugepages %s, ksm %s\n",
		       ctl_out_dash(s->pin_vcpus), ctl_out_dash(s->cgroup),
		       s->hugepages ? "yes" : "no", s->ksm ? "yes" : "no");
	if (s->cpu_template[0])
		printf("cpu:       template %s\n", s->cpu_template);
	if (s->confidential)
		printf("memory:    confidential, encrypted by AMD SEV (runs only where a node "
		       "offers it; never moved live)\n");
	if (s->boot_sig[0])
		printf("boot:      signed by key %.16s... (runs where a trusted key signed it)\n",
		       s->boot_sig);
	printf("created:   %s\n", ctl_out_time(s->created_ms, tb));
}

static void show_status(const struct cl_status *s)
{
	char tb[32];

	printf("status:    %s on %s, pid %d, epoch %" PRIu64 ", restarts %" PRIu32 ", since %s\n",
	       s->state, ctl_out_dash(s->node), s->pid, s->epoch, s->restarts,
	       ctl_out_time(s->since_ms, tb));
	if (s->error[0])
		printf("error:     %s\n", s->error);
	if (s->console[0])
		printf("console:   %s\n", s->console);
	if (s->balloon)
		printf("balloon:   target %" PRIu64 " MiB, actual %" PRIu64 " MiB (the VMM's)\n",
		       s->balloon_target_mb, s->balloon_actual_mb);
}

static void show_mig(const struct cl_migration *m)
{
	char tb[32], line[256];

	printf("migration: %s %s → %s (id %s, by %s, requested %s)\n", m->phase, m->source,
	       m->target, m->id, ctl_out_dash(m->by), ctl_out_time(m->requested_ms, tb));
	if (!strcmp(m->phase, "done")) {
		ctl_mig_summary(m, line, sizeof(line));
		printf("           %s\n", line);
	} else if (!strcmp(m->phase, "failed")) {
		printf("           error: %s\n", ctl_out_dash(m->error));
	} else if (!strcmp(m->phase, "postcopy-broken")) {
		printf("           error: %s\n", ctl_out_dash(m->error));
		printf("           the guest is paused on %s as of the switch; the cluster takes "
		       "it "
		       "back there once %s's VMM is known to be gone (its status, or its node "
		       "fenced)\n",
		       m->source, m->target);
	} else {
		ctl_mig_progress(m, line, sizeof(line));
		printf("           %s\n", line);
	}
}

/* The VM's last backup, its schedule and its last restore. */
static void show_backups(const struct cl_vm_view *vv)
{
	const struct cl_backup *b = &vv->backup;
	char tb[32];

	if (vv->has_backup)
		printf("backup:    %s %s (by %s, asked %s%s%s)%s%s\n", b->phase,
		       ctl_out_dash(b->backup), ctl_out_dash(b->by),
		       ctl_out_time(b->requested_ms, tb), b->node[0] ? ", on " : "", b->node,
		       b->error[0] ? ": " : "", b->error);
	if (vv->has_schedule)
		printf("schedule:  every %" PRIu64 " s, keep %u, max age %" PRIu64 " s, store %s\n",
		       vv->schedule.every_ms / 1000, vv->schedule.keep,
		       vv->schedule.max_age_ms / 1000, ctl_out_dash(vv->schedule.store));
	if (vv->has_restore)
		printf("restore:   %s from %s%s%s%s%s\n", vv->restore.phase, vv->restore.from,
		       vv->restore.node[0] ? " on " : "", vv->restore.node,
		       vv->restore.error[0] ? ": " : "", vv->restore.error);
}

static void show_text(const struct cl_vm_view *vv)
{
	printf("vm:        %s (%s)\n", vv->name, ctl_out_dash(ctl_vm_state(vv)));
	if (vv->has_spec)
		show_spec(&vv->spec);
	else
		printf("desired:   deleted (its VMM is stopping)\n");
	if (vv->has_owner)
		printf("owner:     %s (epoch %" PRIu64 ")\n", vv->owner.node, vv->owner.epoch);
	else
		printf("owner:     - (not placed)\n");
	if (vv->has_status)
		show_status(&vv->status);
	else
		printf("status:    -\n");
	if (vv->has_mig)
		show_mig(&vv->mig);
	show_backups(vv);
}

static json_t *show_json(const struct cl_vm_view *vv)
{
	const char *st = ctl_vm_state(vv);

	return json_pack(
		"{s:s, s:o, s:o, s:I, s:o, s:o, s:o, s:o, s:o, s:o}", "name", vv->name, "state",
		st ? json_string(st) : json_null(), "spec",
		vv->has_spec ? ctl_out_rec(cl_spec_json(&vv->spec)) : json_null(), "spec_rev",
		(json_int_t)vv->spec_rev, "owner",
		vv->has_owner ? ctl_out_rec(cl_owner_json(&vv->owner)) : json_null(), "status",
		vv->has_status ? ctl_out_rec(cl_status_json(&vv->status)) : json_null(),
		"migration", vv->has_mig ? ctl_out_rec(cl_migration_json(&vv->mig)) : json_null(),
		"backup", vv->has_backup ? ctl_out_rec(cl_backup_json(&vv->backup)) : json_null(),
		"schedule",
		vv->has_schedule ? ctl_out_rec(cl_schedule_json(&vv->schedule)) : json_null(),
		"restore",
		vv->has_restore ? ctl_out_rec(cl_restore_json(&vv->restore)) : json_null());
}

int ctl_cmd_vm_show(struct ctl *c, int argc, char **argv)
{
	const char *name = NULL;
	struct cl_view v;
	long i;
	int rc = ctl_args_parse(c, "vm show", argc, argv, NULL, "NAME", &name);

	if (rc || (rc = ctl_view(c, &v)))
		return rc;
	i = ctl_vm_index(&v, name);
	if (i < 0 || !ctl_vm_exists(&v.vms[i]))
		rc = ctl_fail("unknown vm %s", name);
	else if (c->json)
		ctl_out_json(show_json(&v.vms[i]));
	else
		show_text(&v.vms[i]);
	cl_view_free(&v);
	return rc;
}
