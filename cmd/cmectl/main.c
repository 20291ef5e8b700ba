/* cmectl: the operator's command line. It reads and writes the cluster's desired state in
 * etcd and never talks to a node or a VMM directly.
 *   cmectl [global options] COMMAND [arguments]     (cmectl --help lists the commands)
 * Exit status: 0 success, 1 the operation failed, 2 usage error. */
#include "cmectl.h"

#include <signal.h>
#include <string.h>

static int cmd_help(struct ctl *c, int argc, char **argv);

static const struct ctl_cmd commands[] = {
	{ "node", "ls", ctl_cmd_node_ls, "", "nodes: up/down, admin state, capacity used/offered" },
	{ "node", "show", ctl_cmd_node_show, "NAME",
	  "one node: record, admin state, usage, CPU features, its VMs" },
	{ "node", "drain", ctl_cmd_node_drain, "NAME [--no-wait]",
	  "live-migrate every VM away; wait until the node owns none" },
	{ "node", "maintenance", ctl_cmd_node_maintenance, "NAME [--no-wait]",
	  "like drain, and the node stays out of placement" },
	{ "node", "undrain", ctl_cmd_node_undrain, "NAME", "make the node schedulable again" },
	{ "node", "forget", ctl_cmd_node_forget, "NAME",
	  "remove a node that is gone for good (down, owning no VM) from the members" },
	{ "vm", "create", ctl_cmd_vm_create,
	  "NAME --mem SIZE --vcpus N (--image FILE | --kernel FILE [--initrd FILE])\n"
	  "        [--cmdline STR] [--restart always|on-failure|never] [--group GROUP]\n"
	  "        [--priority N] [--disk PATH[,ro][,direct]] [--balloon] [--pin-vcpus CPU,...]\n"
	  "        [--cgroup PATH[,cpu=CPUS][,mem=SIZE]] [--hugepages] [--ksm]\n"
	  "        [--cpu-template host|x86-64-v1|x86-64-v2|x86-64-v3|x86-64-v4]\n"
	  "        [--boot-sig SIG] [--stopped] [--no-wait]",
	  "define a VM (files must exist at the same path on every node) and start it" },
	{ "vm", "ls", ctl_cmd_vm_ls, "", "VMs: state, node, epoch, size, migration in flight" },
	{ "vm", "show", ctl_cmd_vm_show, "NAME", "spec, owner, status and last migration of a VM" },
	{ "vm", "start", ctl_cmd_vm_start, "NAME [--no-wait]", "want the VM running; wait for it" },
	{ "vm", "stop", ctl_cmd_vm_stop, "NAME [--no-wait]", "want the VM stopped; wait for it" },
	{ "vm", "delete", ctl_cmd_vm_delete, "NAME [--no-wait]",
	  "delete the VM; wait until its VMM has stopped" },
	{ "vm", "balloon", ctl_cmd_vm_balloon, "NAME MB",
	  "set the VM's balloon target; its node gives it to the VMM (vm create --balloon)" },
	{ "vm", "migrate", ctl_cmd_vm_migrate, "NAME [--to NODE] [--no-wait]",
	  "live-migrate the VM and follow its progress" },
	{ "vm", "console", ctl_cmd_vm_console, "NAME [-f]",
	  "print (or follow) the VM's console log when it is on this host" },
	{ "image", "keygen", ctl_cmd_image_keygen, "SECRET-FILE PUBLIC-FILE",
	  "an Ed25519 key pair for signed boot (the secret mode 0600)" },
	{ "image", "measure", ctl_cmd_image_measure,
	  "(--image FILE | --kernel FILE [--initrd FILE]) [--cmdline STR]",
	  "the boot's measurement, as the VMM will compute it" },
	{ "image", "sign", ctl_cmd_image_sign,
	  "--key SECRET (--image F | --kernel F [--initrd F]) [--cmdline S] --out SIG",
	  "sign a boot: cme-vmm run --trust KEYS --boot-sig SIG runs only what was signed" },
	{ "image", "verify", ctl_cmd_image_verify,
	  "--trust KEYS --sig SIG (--image F | --kernel F [--initrd F]) [--cmdline S]",
	  "check a boot signature against a trusted key set, as the VMM will" },
	{ "trust", "set", ctl_cmd_trust_set, "--operator-key SECRET --keys KEYS",
	  "the boot keys the cluster trusts (signed: nodes with operator_keys check it)" },
	{ "trust", "show", ctl_cmd_trust_show, "",
	  "the cluster's trusted boot keys, their seq and the operator who signed them" },
	{ "vm", "backup", ctl_cmd_vm_backup, "NAME [--store STORE] [--no-wait]",
	  "a live backup of a VM, taken by the node that runs it into a store of its config" },
	{ "vm", "restore", ctl_cmd_vm_restore,
	  "NAME --from VM[/ID] [--store STORE] [--to NODE] [--no-wait]",
	  "start a stopped VM from a backup instead of booting it (on NODE)" },
	{ "backup", "schedule", ctl_cmd_backup_schedule,
	  "NAME (--every DURATION [--keep N] [--max-age DURATION] [--store STORE] | --off)",
	  "back a VM up every DURATION (its node does it), keeping the newest N" },
	{ "backup", "keygen", ctl_cmd_backup_keygen, "FILE",
	  "a new backup store key (no backup can be read without it: keep a copy safe)" },
	{ "backup", "init", ctl_cmd_backup_init, "--store DIR --key FILE [--chunk-size SIZE]",
	  "make a backup store in a folder (local, NFS, any mounted file system)" },
	{ "backup", "ls", ctl_cmd_backup_ls, "--store DIR --key FILE [--vm NAME]",
	  "the backups in a store, oldest first" },
	{ "backup", "show", ctl_cmd_backup_show, "--store DIR --key FILE VM[/ID]",
	  "one backup (VM alone: its newest): what it holds and what it cost" },
	{ "backup", "verify", ctl_cmd_backup_verify, "--store DIR --key FILE VM[/ID]",
	  "read, authenticate and hash again every chunk of a backup" },
	{ "backup", "prune", ctl_cmd_backup_prune,
	  "--store DIR --key FILE [--vm NAME] (--keep N | --max-age D) [--grace D]",
	  "remove old backups (the newest stays) and chunks no backup needs" },
	{ "backup", "sync", ctl_cmd_backup_sync, "--store DIR --key FILE --to DIR [--vm NAME]",
	  "copy backups to a second store (another site's): only the chunks it lacks" },
	{ NULL, "events", ctl_cmd_events, "[--vm NAME] [-n N] [-f]", "the cluster's event log" },
	{ NULL, "status", ctl_cmd_status, "",
	  "etcd, leader, nodes, VMs and migrations at a glance" },
	{ NULL, "help", cmd_help, "", "this text" },
};

static void print_cmd(FILE *f, const struct ctl_cmd *cmd)
{
	fprintf(f, "  cmectl %s%s%s%s%s\n", cmd->group ? cmd->group : "", cmd->group ? " " : "",
		cmd->name, cmd->args[0] ? " " : "", cmd->args);
	fprintf(f, "        %s\n", cmd->summary);
}

static void usage(FILE *f)
{
	fprintf(f, "usage: cmectl [global options] COMMAND [arguments]\n\ncommands:\n");
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
		print_cmd(f, &commands[i]);
	fprintf(f,
		"\nglobal options (before or after the command):\n"
		"  --etcd URLS       comma-separated http(s)://host:port (env CME_ETCD,\n"
		"                    default " CTL_DEFAULT_ETCD ")\n"
		"  --tls-dir DIR     DIR/ca.crt, DIR/tls.crt, DIR/tls.key for https endpoints\n"
		"                    (env CME_TLS_DIR)\n"
		"  --prefix P        key prefix in etcd (env CME_PREFIX, "
		"default " CTL_DEFAULT_PREFIX ")\n"
		"  -o table|json     output format (default table)\n"
		"  --timeout SECONDS how long commands wait (default %d)\n"
		"\nexit status: 0 success, 1 the operation failed, 2 usage error\n",
		CTL_DEFAULT_TIMEOUT);
}

static int cmd_help(struct ctl *c, int argc, char **argv)
{
	(void)c;
	(void)argc;
	(void)argv;
	usage(stdout);
	return CTL_OK;
}

static int group_help(const char *group)
{
	printf("usage:\n");
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
		if (commands[i].group && !strcmp(commands[i].group, group))
			print_cmd(stdout, &commands[i]);
	return CTL_OK;
}

/* "ls, show, ..." for a group (static buffer: one message at a time). */
static const char *group_names(const char *group)
{
	static char buf[256];
	size_t off = 0;

	buf[0] = 0;
	for (size_t i = 0; i < ARRAY_SIZE(commands) && off < sizeof(buf); i++)
		if (commands[i].group && !strcmp(commands[i].group, group))
			off += (size_t)snprintf(buf + off, sizeof(buf) - off, "%s%s",
						off ? ", " : "", commands[i].name);
	return buf;
}

/* The command named by argv[0] (and argv[1] for a group); *used gets how many words. */
static const struct ctl_cmd *find_cmd(int argc, char **argv, int *used, bool *group_known)
{
	*group_known = false;
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++) {
		const struct ctl_cmd *cmd = &commands[i];

		if (!cmd->group && !strcmp(cmd->name, argv[0])) {
			*used = 1;
			return cmd;
		}
		if (!cmd->group || strcmp(cmd->group, argv[0]))
			continue;
		*group_known = true;
		if (argc > 1 && !strcmp(cmd->name, argv[1])) {
			*used = 2;
			return cmd;
		}
	}
	return NULL;
}

static bool wants_help(int argc, char **argv)
{
	for (int i = 0; i < argc; i++)
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
			return true;
	return false;
}

static int dispatch(struct ctl *c, int argc, char **argv)
{
	const struct ctl_cmd *cmd;
	bool group_known;
	int used = 0;

	if (argc == 0)
		return ctl_usage("no command given");
	cmd = find_cmd(argc, argv, &used, &group_known);
	if (!cmd && group_known && wants_help(argc - 1, argv + 1))
		return group_help(argv[0]);
	if (!cmd && group_known && argc == 1)
		return ctl_usage("%s: which command? %s has: %s", argv[0], argv[0],
				 group_names(argv[0]));
	if (!cmd && group_known)
		return ctl_usage("%s %s: unknown command; %s has: %s", argv[0], argv[1], argv[0],
				 group_names(argv[0]));
	if (!cmd)
		return ctl_usage("unknown command %s", argv[0]);
	if (wants_help(argc - used, argv + used)) {
		printf("usage:\n");
		print_cmd(stdout, cmd);
		return CTL_OK;
	}
	return cmd->run(c, argc - used, argv + used);
}

int main(int argc, char **argv)
{
	struct ctl c = { 0 };
	int n, rc;

	/* Library warnings (a malformed record skipped) stay quiet: cmectl's own errors are
	 * its one line each. A closed pipe (cmectl ... | head) ends it quietly too. */
	log_init("cmectl", LOG_ERR);
	signal(SIGPIPE, SIG_DFL);
	ctl_args_defaults(&c);
	if (wants_help(argc - 1, argv + 1) && (argc < 3 || argv[1][0] == '-')) {
		usage(stdout);
		return CTL_OK;
	}
	n = ctl_args_globals(&c, argc - 1, argv + 1);
	if (n < 0)
		return CTL_USAGE;
	rc = dispatch(&c, argc - 1 - n, argv + 1 + n);
	ctl_close(&c);
	return rc;
}
