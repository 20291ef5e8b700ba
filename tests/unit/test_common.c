/* common/: sizes, numbers, range checks, line buffers. */
#include <errno.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "harness.h"
#include "migration.pb-c.h"
#include "proto.h"
#include "unit.h"

static void test_parse_size_units(void)
{
	uint64_t v = 0;

	CU_ASSERT_EQUAL(parse_size("512M", &v), 0);
	CU_ASSERT_EQUAL(v, 512ull << 20);
	CU_ASSERT_EQUAL(parse_size("2G", &v), 0);
	CU_ASSERT_EQUAL(v, 2ull << 30);
	CU_ASSERT_EQUAL(parse_size("64k", &v), 0);
	CU_ASSERT_EQUAL(v, 64ull << 10);
	CU_ASSERT_EQUAL(parse_size("1GiB", &v), 0);
	CU_ASSERT_EQUAL(v, 1ull << 30);
	CU_ASSERT_EQUAL(parse_size("1048576", &v), 0);
	CU_ASSERT_EQUAL(v, 1048576);
}

static void test_parse_size_rejects(void)
{
	static const char *const bad[] = { "",
					   "M",
					   "-1G",
					   "12X",
					   "1.5G",
					   "0",
					   "0M",
					   "1GG",
					   "99999999999999999999",
					   "17179869184G",
					   " 1G",
					   "1G " };
	uint64_t v = 42;

	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		CU_ASSERT_EQUAL(parse_size(bad[i], &v), -EINVAL);
		CU_ASSERT_EQUAL(v, 42); /* untouched on failure */
	}
}

static void test_parse_uint(void)
{
	uint64_t v;

	CU_ASSERT_EQUAL(parse_uint("32", 1, 32, &v), 0);
	CU_ASSERT_EQUAL(v, 32);
	CU_ASSERT_EQUAL(parse_uint("33", 1, 32, &v), -ERANGE);
	CU_ASSERT_EQUAL(parse_uint("0", 1, 32, &v), -ERANGE);
	CU_ASSERT_EQUAL(parse_uint("2x", 1, 32, &v), -EINVAL);
	CU_ASSERT_EQUAL(parse_uint("", 1, 32, &v), -EINVAL);
}

static void test_range_within(void)
{
	CU_ASSERT_TRUE(range_within(0x1000, 0x1000, 0, 0x2000));
	CU_ASSERT_FALSE(range_within(0x1001, 0x1000, 0, 0x2000));
	CU_ASSERT_FALSE(range_within(UINT64_MAX - 10, 100, 0, UINT64_MAX)); /* wraps */
	CU_ASSERT_FALSE(range_within(0, 1, 0x1000, 0x1000));
	CU_ASSERT_TRUE(range_within(0x1000, 0, 0x1000, 0));
}

static void test_bits_count(void)
{
	static const uint64_t w[4] = { 0, 0x8000000000000001ull, UINT64_MAX, 0x10 };

	CU_ASSERT_EQUAL(bits_count(w, 4, UINT64_MAX), 67);
	CU_ASSERT_EQUAL(bits_count(w, 2, UINT64_MAX), 2);
	CU_ASSERT_EQUAL(bits_count(w, 0, UINT64_MAX), 0);
	/* A limit stops at the first word past it: never fewer than the limit, and the
	 * words after it are not read. */
	CU_ASSERT_EQUAL(bits_count(w, 4, 1), 2);
	CU_ASSERT_EQUAL(bits_count(w, 4, 2), 66);
	CU_ASSERT_EQUAL(bits_count(w, 4, 66), 67);
	CU_ASSERT_EQUAL(bits_count(w, 4, 0), 2);
}

static void test_linebuf_lines_and_limit(void)
{
	int fds[2];
	struct linebuf lb;
	char *a, *b;

	CU_ASSERT_FATAL(pipe(fds) == 0);
	linebuf_init(&lb, 16);
	CU_ASSERT_EQUAL(write(fds[1], "one\ntwo\nthr", 11), 11);
	CU_ASSERT_EQUAL(linebuf_fill(&lb, fds[0]), 11);
	a = linebuf_take(&lb);
	b = linebuf_take(&lb);
	CU_ASSERT_STRING_EQUAL(a, "one");
	CU_ASSERT_STRING_EQUAL(b, "two");
	CU_ASSERT_PTR_NULL(linebuf_take(&lb)); /* "thr" is incomplete */
	free(a);
	free(b);
	CU_ASSERT_EQUAL(write(fds[1], "eeeeeeeeeeeeeeeeeeeeeeee", 24), 24);
	CU_ASSERT_EQUAL(linebuf_fill(&lb, fds[0]), -EMSGSIZE);
	linebuf_free(&lb);
	close(fds[0]);
	close(fds[1]);
}

static void test_write_file_atomic(void)
{
	char path[512], tmp[520], buf[32] = "";
	FILE *f;

	snprintf(path, sizeof(path), "%s/atomic", test_tmpdir());
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	CU_ASSERT_EQUAL(write_file_atomic(path, "first\n", 6), 0);
	CU_ASSERT_EQUAL(write_file_atomic(path, "2nd\n", 4), 0);
	f = fopen(path, "r");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	CU_ASSERT_EQUAL(fread(buf, 1, sizeof(buf) - 1, f), 4);
	fclose(f);
	CU_ASSERT_STRING_EQUAL(buf, "2nd\n");
	CU_ASSERT_NOT_EQUAL(access(tmp, F_OK), 0); /* no leftover */
	snprintf(path, sizeof(path), "%s/no/such/dir/file", test_tmpdir());
	CU_ASSERT_EQUAL(write_file_atomic(path, "x", 1), -ENOENT);
}

/* A message of tiny unknown fields decodes into ~17 times its size without a budget; with
 * one the unpack fails instead. A real message decodes on its budget. */
static void test_pb_budget(void)
{
	enum { FIELDS = 400000 };
	uint8_t *buf = malloc(FIELDS * 3), real[64];
	Cme__MigRoundEnd e = CME__MIG_ROUND_END__INIT, *m;
	size_t len;

	CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
	for (size_t i = 0; i < FIELDS; i++) { /* field 1000, varint 0: 0xc0 0x3e 0x00 */
		buf[3 * i] = 0xc0;
		buf[3 * i + 1] = 0x3e;
		buf[3 * i + 2] = 0;
	}
	m = cme__mig_round_end__unpack(NULL, FIELDS * 3, buf);
	CU_ASSERT_PTR_NOT_NULL(m); /* what a peer could make us allocate without the bound */
	if (m)
		CU_ASSERT_EQUAL(m->base.n_unknown_fields, FIELDS);
	cme__mig_round_end__free_unpacked(m, NULL);
	CU_ASSERT_PTR_NULL(PB_UNPACK(cme__mig_round_end__unpack, FIELDS * 3, buf));
	free(buf);

	e.round = 7;
	e.final = true;
	len = cme__mig_round_end__pack(&e, real);
	m = PB_UNPACK(cme__mig_round_end__unpack, len, real);
	CU_ASSERT_PTR_NOT_NULL_FATAL(m);
	CU_ASSERT_EQUAL(m->round, 7);
	CU_ASSERT_TRUE(m->final);
	cme__mig_round_end__free_unpacked(m, NULL);
}

/* A key pair written by boot_cmd_keygen into dir: its secret and public file. */
static void keypair(const char *dir, const char *name, char *sk, char *pk, size_t len)
{
	char *argv[] = { "keygen", sk, pk, NULL };

	snprintf(sk, len, "%s/%s.sk", dir, name);
	snprintf(pk, len, "%s/%s.pk", dir, name);
	CU_ASSERT_EQUAL_FATAL(boot_cmd_keygen(3, argv), 0);
}

/* The cluster's trust record: what an operator key signed verifies against a file holding
 * that key, and nothing else does — another signer, another seq, other keys, a bad sig. */
static void test_trust_record(void)
{
	const char *dir = test_tmpdir();
	char op_sk[600], op_pk[600], x_sk[600], x_pk[600], keys[200], other[200], err[400];
	char signer[65], sig[129], bad[129];
	FILE *f;
	char *line = NULL;
	size_t cap = 0;

	keypair(dir, "op", op_sk, op_pk, sizeof(op_sk));
	keypair(dir, "x", x_sk, x_pk, sizeof(x_sk));
	f = fopen(x_pk, "r");
	CU_ASSERT_FATAL(f && getline(&line, &cap, f) > 64);
	fclose(f);
	snprintf(keys, sizeof(keys), "%.64s", line);
	snprintf(other, sizeof(other), "%.64s,%.64s", line, line);
	free(line);
	CU_ASSERT_EQUAL(trust_sign(op_sk, "/cme", 5, keys, signer, sig, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(trust_verify(op_pk, "/cme", 5, keys, signer, sig, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(trust_verify(op_pk, "/cme", 6, keys, signer, sig, err, sizeof(err)),
			-EACCES);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "does not match"));
	CU_ASSERT_EQUAL(trust_verify(op_pk, "/cme", 5, other, signer, sig, err, sizeof(err)),
			-EACCES);
	/* another cluster's record (another prefix) */
	CU_ASSERT_EQUAL(trust_verify(op_pk, "/other", 5, keys, signer, sig, err, sizeof(err)),
			-EACCES);
	/* signed by a key the node does not hold as an operator's */
	CU_ASSERT_EQUAL(trust_verify(x_pk, "/cme", 5, keys, signer, sig, err, sizeof(err)),
			-EACCES);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "not an operator key"));
	snprintf(bad, sizeof(bad), "%s", sig);
	bad[0] = bad[0] == '0' ? '1' : '0';
	CU_ASSERT_EQUAL(trust_verify(op_pk, "/cme", 5, keys, signer, bad, err, sizeof(err)),
			-EACCES);
	CU_ASSERT_EQUAL(trust_verify(op_pk, "/cme", 5, "zz", signer, sig, err, sizeof(err)),
			-EINVAL);
	CU_ASSERT_EQUAL(trust_sign(op_sk, "/cme", 1, "", signer, sig, err, sizeof(err)), -EINVAL);
	/* a secret key others may read is no operator's key */
	CU_ASSERT_EQUAL(chmod(op_sk, 0644), 0);
	CU_ASSERT_EQUAL(trust_sign(op_sk, "/cme", 1, keys, signer, sig, err, sizeof(err)), -EACCES);
}

/* A child in a PID namespace of its own is its PID 1, and knows its host PID. */
static void test_pidns(void)
{
	pid_t pid = proc_clone_pidns();
	int st = -1;

	if (pid < 0) {
		test_skip("no PID namespace can be made here: %s", strerror(errno));
		return;
	}
	if (pid == 0)
		_exit(getpid() == 1 && proc_host_pid() > 1 ? 0 : 1);
	CU_ASSERT_EQUAL(waitpid(pid, &st, 0), pid);
	CU_ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	CU_ASSERT_EQUAL(proc_host_pid(), getpid()); /* the test runs in the host's */
}

/* The folders a VMM left in CG_MADE_FILE go — only control groups named as its --cgroup
 * or its leading parts, whatever else the file says. */
static void test_cg_remove_made(void)
{
	const char *roots[] = { "/sys/fs/cgroup", "/sys/fs/cgroup/cpu" };
	char base[128], a[160], b[160], other[600], made[600], list[1400], rel[64], link[600];
	char other_made[600];
	struct statfs fs;
	const char *root = NULL;

	for (size_t i = 0; i < ARRAY_SIZE(roots) && !root; i++)
		if (!statfs(roots[i], &fs) &&
		    (fs.f_type == CGROUP2_SUPER_MAGIC || fs.f_type == CGROUP_SUPER_MAGIC) &&
		    !access(roots[i], W_OK))
			root = roots[i];
	if (!root || geteuid()) {
		test_skip("no writable control group hierarchy here (needs root)");
		return;
	}
	snprintf(rel, sizeof(rel), "cme-unit-%d/a", (int)getpid());
	snprintf(base, sizeof(base), "%s/cme-unit-%d", root, (int)getpid());
	snprintf(a, sizeof(a), "%s/a", base);
	snprintf(b, sizeof(b), "%s/b", base);
	snprintf(other, sizeof(other), "%s/not-a-cgroup", test_tmpdir());
	snprintf(made, sizeof(made), "%s/%s", test_tmpdir(), CG_MADE_FILE);
	snprintf(other_made, sizeof(other_made), "%s/elsewhere", test_tmpdir());
	CU_ASSERT_FATAL(!mkdir(base, 0755) && !mkdir(a, 0755) && !mkdir(b, 0755) &&
			!mkdir(other, 0755));
	strcat(rel, ",cpu=1");
	/* Named through a link (its last parts as asked), or not a control group: left. */
	snprintf(link, sizeof(link), "%s/cme-unit-%d", test_tmpdir(), (int)getpid());
	CU_ASSERT_FATAL(!symlink(base, link));
	snprintf(list, sizeof(list), "%s/a\n%s\n", link, other);
	CU_ASSERT_EQUAL_FATAL(write_file_atomic(made, list, strlen(list)), 0);
	cg_remove_made(made, rel);
	CU_ASSERT_EQUAL(access(a, F_OK), 0);
	CU_ASSERT_EQUAL(access(made, F_OK), -1);
	/* A link as the file itself is not read. */
	snprintf(list, sizeof(list), "%s\n", a);
	CU_ASSERT_EQUAL_FATAL(write_file_atomic(other_made, list, strlen(list)), 0);
	CU_ASSERT_FATAL(!symlink(other_made, made));
	cg_remove_made(made, rel);
	CU_ASSERT_EQUAL(access(a, F_OK), 0);
	unlink(made);
	/* What it made goes; another group and a folder still in use stay. */
	snprintf(list, sizeof(list), "%s\n%s\n%s\n%s\n", other, base, b, a);
	CU_ASSERT_EQUAL_FATAL(write_file_atomic(made, list, strlen(list)), 0);
	cg_remove_made(made, rel);
	CU_ASSERT_EQUAL(access(a, F_OK), -1);
	CU_ASSERT_EQUAL(access(b, F_OK), 0);	 /* another group: left */
	CU_ASSERT_EQUAL(access(base, F_OK), 0);	 /* not empty (b): the kernel keeps it */
	CU_ASSERT_EQUAL(access(other, F_OK), 0); /* not a control group: left */
	CU_ASSERT_EQUAL(access(made, F_OK), -1);
	rmdir(b);
	rmdir(base);
	rmdir(other);
}

void suite_common(void)
{
	static const struct test_case cases[] = {
		{ "parse_size accepts binary units", test_parse_size_units },
		{ "parse_size rejects junk, zero and overflow", test_parse_size_rejects },
		{ "parse_uint bounds", test_parse_uint },
		{ "range_within is overflow-safe", test_range_within },
		{ "bits_count counts a bitmap, up to a limit", test_bits_count },
		{ "linebuf splits lines and refuses oversize", test_linebuf_lines_and_limit },
		{ "write_file_atomic replaces a file whole", test_write_file_atomic },
		{ "protobuf decoding is bounded (unknown fields)", test_pb_budget },
		{ "the trust record: an operator's signature, nothing else", test_trust_record },
		{ "a PID namespace of its own: PID 1, its host PID known", test_pidns },
		{ "a VMM's control groups removed for it, and nothing else", test_cg_remove_made },
		{ NULL, NULL },
	};
	test_add_suite("common", cases);
}
