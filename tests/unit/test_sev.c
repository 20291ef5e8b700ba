/* The AMD SEV launch sequence (hypervisor/sev.c) against a recording stand-in for the
 * KVM ioctl: the order KVM and the PSP firmware require, what each command carries, and
 * that a failure stops the launch with the command and the firmware's reason named. No
 * SEV host is needed (none is here): the real ioctls run only on one. */
#include <errno.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "sev_priv.h"
#include "unit.h"
#include "unit_vm.h"

#define MAX_CALLS 16

static struct {
	unsigned n;
	unsigned long req[MAX_CALLS];
	uint32_t id[MAX_CALLS];	    /* the SEV command, for KVM_MEMORY_ENCRYPT_OP */
	uint32_t sev_fd[MAX_CALLS]; /* what the command carried */
	uint64_t addr[MAX_CALLS], len[MAX_CALLS];
	uint32_t policy;
	int fail_at;	      /* the call that fails (-1: none) */
	uint32_t fail_status; /* the firmware status it reports */
} rec;

static int fake_ioctl(int fd, unsigned long req, void *arg)
{
	unsigned i = rec.n++;

	CU_ASSERT_EQUAL(fd, 7); /* always the VM's descriptor */
	if (i >= MAX_CALLS)
		return errno = E2BIG, -1;
	rec.req[i] = req;
	if (req == KVM_MEMORY_ENCRYPT_REG_REGION) {
		struct kvm_enc_region *r = arg;

		rec.addr[i] = r->addr;
		rec.len[i] = r->size;
	} else {
		struct kvm_sev_cmd *c = arg;

		rec.id[i] = c->id;
		rec.sev_fd[i] = c->sev_fd;
		if (c->id == KVM_SEV_LAUNCH_START) {
			struct kvm_sev_launch_start *s = (void *)(uintptr_t)c->data;

			rec.policy = s->policy;
			s->handle = 42;
		} else if (c->id == KVM_SEV_LAUNCH_UPDATE_DATA) {
			struct kvm_sev_launch_update_data *u = (void *)(uintptr_t)c->data;

			rec.addr[i] = u->uaddr;
			rec.len[i] = u->len;
		} else if (c->id == KVM_SEV_LAUNCH_MEASURE) {
			struct kvm_sev_launch_measure *m = (void *)(uintptr_t)c->data;

			rec.addr[i] = m->uaddr;
			rec.len[i] = m->len;
			if (!m->len) { /* the length query: the firmware says how long */
				m->len = 48;
				c->error = 4; /* INVALID_LENGTH */
				return errno = EIO, -1;
			}
			memset((void *)(uintptr_t)m->uaddr, 0xab, 48);
			m->len = 48;
		}
		if ((int)i == rec.fail_at) {
			c->error = rec.fail_status;
			return errno = EIO, -1;
		}
	}
	return 0;
}

static const struct sev_ops fake_ops = { .ioctl = fake_ioctl };

static void rec_reset(int fail_at, uint32_t status)
{
	memset(&rec, 0, sizeof(rec));
	rec.fail_at = fail_at;
	rec.fail_status = status;
}

static void test_cbit(void)
{
	CU_ASSERT_EQUAL(sev_cbit_from_cpuid(0x1000f, 0x16f), 47); /* Zen: SME|SEV|..., 47 */
	CU_ASSERT_EQUAL(sev_cbit_from_cpuid(0x2, 0x33), 51);
	CU_ASSERT_EQUAL(sev_cbit_from_cpuid(0x1, 0x2f), -1); /* SME only: no guests */
	CU_ASSERT_EQUAL(sev_cbit_from_cpuid(0, 0), -1);
	CU_ASSERT_STRING_EQUAL(sev_error_name(7), "POLICY_FAILURE");
	CU_ASSERT_STRING_EQUAL(sev_error_name(0), "SUCCESS");
	CU_ASSERT_STRING_EQUAL(sev_error_name(1000), "UNKNOWN");
}

/* INIT, LAUNCH_START (policy, /dev/sev), REG_REGION per slot, UPDATE_DATA over what was
 * loaded, MEASURE (length, then blob), FINISH: in that order, nothing else. */
static void test_launch_sequence(void)
{
	static uint8_t ram[2][1 << 16] __attribute__((aligned(4096)));
	struct sev_launch s;
	char err[256] = "";

	rec_reset(-1, 0);
	CU_ASSERT_EQUAL_FATAL(sev_begin(&s, &fake_ops, 7, 9, 51, SEV_POLICY_CME, err, sizeof(err)),
			      0);
	CU_ASSERT_EQUAL(s.handle, 42);
	CU_ASSERT_EQUAL(sev_register(&s, ram[0], sizeof(ram[0]), err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(sev_register(&s, ram[1], sizeof(ram[1]), err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(sev_encrypt(&s, ram[0], 0x8000, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(sev_finish(&s, err, sizeof(err)), 0);

	CU_ASSERT_EQUAL_FATAL(rec.n, 8);
	CU_ASSERT(rec.req[0] == KVM_MEMORY_ENCRYPT_OP && rec.id[0] == KVM_SEV_INIT);
	CU_ASSERT(rec.req[1] == KVM_MEMORY_ENCRYPT_OP && rec.id[1] == KVM_SEV_LAUNCH_START);
	CU_ASSERT_EQUAL(rec.sev_fd[0], 9);
	CU_ASSERT_EQUAL(rec.sev_fd[1], 9);
	CU_ASSERT_EQUAL(rec.policy, SEV_POLICY_NODBG | SEV_POLICY_NOKS | SEV_POLICY_NOSEND);
	CU_ASSERT(rec.req[2] == KVM_MEMORY_ENCRYPT_REG_REGION && rec.len[2] == sizeof(ram[0]));
	CU_ASSERT_EQUAL(rec.addr[2], (uint64_t)(uintptr_t)ram[0]);
	CU_ASSERT(rec.req[3] == KVM_MEMORY_ENCRYPT_REG_REGION);
	CU_ASSERT_EQUAL(rec.addr[3], (uint64_t)(uintptr_t)ram[1]);
	CU_ASSERT_EQUAL(rec.id[4], KVM_SEV_LAUNCH_UPDATE_DATA);
	CU_ASSERT_EQUAL(rec.addr[4], (uint64_t)(uintptr_t)ram[0]);
	CU_ASSERT_EQUAL(rec.len[4], 0x8000);
	CU_ASSERT(rec.id[5] == KVM_SEV_LAUNCH_MEASURE && rec.len[5] == 0); /* the length */
	CU_ASSERT(rec.id[6] == KVM_SEV_LAUNCH_MEASURE && rec.len[6] == 48);
	CU_ASSERT_EQUAL(rec.addr[6], (uint64_t)(uintptr_t)s.measure);
	CU_ASSERT_EQUAL(rec.id[7], KVM_SEV_LAUNCH_FINISH);
	CU_ASSERT_EQUAL(s.stage, SEV_FINISHED);
	CU_ASSERT_EQUAL(s.measure_len, 48);
	CU_ASSERT_EQUAL(s.measure[0], 0xab);
	CU_ASSERT_EQUAL(s.measure[47], 0xab);
	CU_ASSERT_EQUAL(s.encrypted, 0x8000);
	/* Launched: no more plaintext goes in, and no second finish. */
	CU_ASSERT_EQUAL(sev_encrypt(&s, ram[0], 0x1000, err, sizeof(err)), -EINVAL);
	CU_ASSERT_EQUAL(sev_finish(&s, err, sizeof(err)), -EINVAL);
	CU_ASSERT_EQUAL(rec.n, 8);
}

/* A refused LAUNCH_START names the command and the firmware's status, and nothing after
 * it runs; an unaligned range never reaches the firmware; SEV-ES is not offered. */
static void test_launch_failures(void)
{
	static uint8_t ram[1 << 14] __attribute__((aligned(4096)));
	struct sev_launch s;
	char err[256] = "";

	rec_reset(1, 7);
	CU_ASSERT_EQUAL(sev_begin(&s, &fake_ops, 7, 9, 47, SEV_POLICY_CME, err, sizeof(err)), -EIO);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "LAUNCH_START"));
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "POLICY_FAILURE"));
	CU_ASSERT_EQUAL(s.stage, SEV_FAILED);
	CU_ASSERT_EQUAL(sev_register(&s, ram, sizeof(ram), err, sizeof(err)), -EINVAL);
	CU_ASSERT_EQUAL(sev_encrypt(&s, ram, 4096, err, sizeof(err)), -EINVAL);
	CU_ASSERT_EQUAL(sev_finish(&s, err, sizeof(err)), -EINVAL);
	CU_ASSERT_EQUAL(rec.n, 2);

	rec_reset(-1, 0);
	CU_ASSERT_EQUAL_FATAL(sev_begin(&s, &fake_ops, 7, 9, 47, SEV_POLICY_CME, err, sizeof(err)),
			      0);
	CU_ASSERT_EQUAL(sev_encrypt(&s, ram + 8, 4096, err, sizeof(err)), -EINVAL);
	CU_ASSERT_EQUAL(sev_encrypt(&s, ram, 4004, err, sizeof(err)), -EINVAL);
	CU_ASSERT_EQUAL(rec.n, 2);
	rec.fail_at = 2; /* LAUNCH_UPDATE_DATA's firmware call fails */
	rec.fail_status = 9;
	CU_ASSERT_EQUAL(sev_encrypt(&s, ram, 4096, err, sizeof(err)), -EIO);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "LAUNCH_UPDATE_DATA"));
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "INVALID_ADDRESS"));
	CU_ASSERT_EQUAL(sev_finish(&s, err, sizeof(err)), -EINVAL); /* never launched */

	/* A range past the kernel's per-call run (an int) goes 1 GiB at a time; the stand-in
	 * never touches the memory, so an address of no mapping serves. */
	rec_reset(-1, 0);
	CU_ASSERT_EQUAL_FATAL(sev_begin(&s, &fake_ops, 7, 9, 47, SEV_POLICY_CME, err, sizeof(err)),
			      0);
	CU_ASSERT_EQUAL(sev_encrypt(&s, (void *)(uintptr_t)0x7f0000000000ull, (5ull << 29), err,
				    sizeof(err)),
			0);
	CU_ASSERT_EQUAL_FATAL(rec.n, 5);
	CU_ASSERT(rec.len[2] == 1ull << 30 && rec.len[3] == 1ull << 30 && rec.len[4] == 1ull << 29);
	CU_ASSERT_EQUAL(rec.addr[3], 0x7f0000000000ull + (1ull << 30));
	CU_ASSERT_EQUAL(rec.addr[4], 0x7f0000000000ull + (2ull << 30));
	CU_ASSERT_EQUAL(s.encrypted, 5ull << 29);

	rec_reset(-1, 0);
	CU_ASSERT_EQUAL(sev_begin(&s, &fake_ops, 7, 9, 47, SEV_POLICY_CME | SEV_POLICY_ES, err,
				  sizeof(err)),
			-ENOTSUP);
	CU_ASSERT_EQUAL(rec.n, 0);
}

/* The VM's side of it (confidential.c) over the same stand-in: every RAM slot registered;
 * a launch with nothing loaded, or a load past the first slot, refused before the
 * firmware; then what the loader wrote (rounded up to whole pages) encrypted, measured
 * and finished once, and status's view of it. */
static void test_launch_glue(void)
{
	struct vm *vm = unit_vm_new();
	struct sev_launch *s = calloc(1, sizeof(*s));
	struct vm_confidential c;
	char err[256] = "";

	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	CU_ASSERT_FATAL(unit_vm_add_ram(vm, 0, 4 << 20) == 0);
	CU_ASSERT_FATAL(unit_vm_add_ram(vm, 4ull << 30, 2 << 20) == 0);
	rec_reset(-1, 0);
	CU_ASSERT_EQUAL_FATAL(sev_begin(s, &fake_ops, 7, -1, 51, SEV_POLICY_CME, err, sizeof(err)),
			      0);
	vm->sev = s;
	CU_ASSERT_EQUAL(vm_confidential_register(vm), 0);
	CU_ASSERT_EQUAL_FATAL(rec.n, 4);
	CU_ASSERT(rec.req[2] == KVM_MEMORY_ENCRYPT_REG_REGION && rec.len[2] == 4 << 20);
	CU_ASSERT_EQUAL(rec.addr[2], (uint64_t)(uintptr_t)vm->slots[0].hva);
	CU_ASSERT(rec.req[3] == KVM_MEMORY_ENCRYPT_REG_REGION && rec.len[3] == 2 << 20);
	CU_ASSERT_EQUAL(rec.addr[3], (uint64_t)(uintptr_t)vm->slots[1].hva);
	vm->loaded_end = 0;
	CU_ASSERT_EQUAL(vm_confidential_launch(vm), -EINVAL);
	vm->loaded_end = (4 << 20) + 1;
	CU_ASSERT_EQUAL(vm_confidential_launch(vm), -EINVAL);
	CU_ASSERT_EQUAL(rec.n, 4);
	CU_ASSERT_TRUE(vm_get_confidential(vm, &c));
	CU_ASSERT_FALSE(c.launched);
	vm->loaded_end = 0x100123;
	CU_ASSERT_EQUAL(vm_confidential_launch(vm), 0);
	CU_ASSERT_EQUAL_FATAL(rec.n, 8);
	CU_ASSERT_EQUAL(rec.id[4], KVM_SEV_LAUNCH_UPDATE_DATA);
	CU_ASSERT_EQUAL(rec.addr[4], (uint64_t)(uintptr_t)vm->slots[0].hva);
	CU_ASSERT_EQUAL(rec.len[4], 0x101000);
	CU_ASSERT_EQUAL(rec.id[7], KVM_SEV_LAUNCH_FINISH);
	CU_ASSERT_TRUE(vm_get_confidential(vm, &c));
	CU_ASSERT(c.launched && c.c_bit == 51 && c.encrypted == 0x101000);
	CU_ASSERT(c.measurement_len == 48 && c.measurement[0] == 0xab);
	CU_ASSERT_STRING_EQUAL(c.technology, "sev");
	CU_ASSERT_EQUAL(vm_confidential_launch(vm), 0); /* launched: nothing more to do */
	CU_ASSERT_EQUAL(rec.n, 8);
	vm_confidential_free(vm); /* its /dev/sev: none here (-1) */
	CU_ASSERT_PTR_NULL(vm->sev);
	CU_ASSERT_FALSE(vm_get_confidential(vm, NULL));
	unit_vm_free(vm);
}

void suite_sev(void)
{
	static const struct test_case cases[] = {
		{ "SEV: the C-bit from CPUID, the firmware's status names", test_cbit },
		{ "SEV launch: INIT, START, regions, UPDATE_DATA, MEASURE, FINISH in order",
		  test_launch_sequence },
		{ "SEV launch: a refused command stops it, named with the firmware's reason",
		  test_launch_failures },
		{ "SEV launch of a VM: slots registered, what was loaded sealed once",
		  test_launch_glue },
		{ NULL, NULL },
	};
	test_add_suite("sev", cases);
}
