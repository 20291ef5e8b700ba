/* The device model without KVM: dispatch of guest accesses, the devices through which a
 * guest ends, device state sections (an old stream still restores; bad ones are refused
 * with a reason) and the state arena's out-of-memory path. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dev_priv.h"
#include "harness.h"
#include "uart_priv.h"
#include "unit.h"
#include "unit_vm.h"

/* A DeviceState section written by the VMM before the device model (commit 4db6dcf's
 * uart_state_save): ier=3 lcr=3 mcr=0x0b lsr=0x61 msr=0xb0 scr=0x5a dll=1 dlm=0 fcr=0xc1,
 * THRE interrupt pending, line high, and "i\n\0\xff" in the receive FIFO. */
static const uint8_t old_uart_section[] = {
	0x0a, 0x04, 0x75, 0x61, 0x72, 0x74, 0x10, 0x01, 0x1a, 0x1c, 0x08, 0x03, 0x10,
	0x03, 0x18, 0x0b, 0x20, 0x61, 0x28, 0xb0, 0x01, 0x30, 0x5a, 0x38, 0x01, 0x48,
	0xc1, 0x01, 0x50, 0x01, 0x5a, 0x04, 0x69, 0x0a, 0x00, 0xff, 0x60, 0x01,
};

/* A VM with its devices but no KVM: enough for dispatch, state and vm_set_end. */
static struct vm *fake_vm(void)
{
	struct vm *vm = unit_vm_new();

	CU_ASSERT_EQUAL_FATAL(vm_setup_devices(vm), 0);
	return vm;
}

/* One port access as a vCPU makes it; returns the byte read (or written). */
static uint8_t pio(struct vm *vm, uint16_t port, bool write, uint8_t val, bool *claimed)
{
	uint8_t data[4] = { val, 0, 0, 0 };
	struct dev_access a = { .addr = port, .size = 1, .write = write, .data = data };
	bool hit = dev_dispatch(vm, DEV_PIO, &a);

	if (claimed)
		*claimed = hit;
	return data[0];
}

static enum vm_end_reason ended(struct vm *vm, struct vm_end *e)
{
	struct vm_end none = { 0 };

	if (!vm_get_end(vm, e))
		*e = none;
	return e->reason;
}

static Cme__DeviceState *section(const uint8_t *buf, size_t len)
{
	Cme__DeviceState *s = cme__device_state__unpack(NULL, len, buf);

	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	return s;
}

static void test_old_uart_state(void)
{
	Cme__DeviceState *old = section(old_uart_section, sizeof(old_uart_section));
	Cme__DeviceState **secs;
	Cme__UartState *m;
	struct vm *vm = fake_vm();
	struct arena a = { 0 };
	char err[256] = "";
	size_t n = 0;

	CU_ASSERT_EQUAL_FATAL(dev_state_load_all(vm, &old, 1, err, sizeof(err)), 0);
	/* Saved again: the same fields, now with where the UART sits appended. */
	CU_ASSERT_EQUAL_FATAL(dev_state_save_all(vm, &a, &n, &secs), 0);
	CU_ASSERT_EQUAL_FATAL(n, 1);
	CU_ASSERT_STRING_EQUAL(secs[0]->name, "uart");
	CU_ASSERT_EQUAL(secs[0]->version, 1);
	CU_ASSERT_FATAL(secs[0]->state.len > old->state.len);
	CU_ASSERT_EQUAL(memcmp(secs[0]->state.data, old->state.data, old->state.len), 0);
	m = cme__uart_state__unpack(NULL, secs[0]->state.len, secs[0]->state.data);
	CU_ASSERT_PTR_NOT_NULL_FATAL(m);
	CU_ASSERT_EQUAL(m->port, UART_COM1_BASE);
	CU_ASSERT_EQUAL(m->irq, UART_COM1_IRQ);
	CU_ASSERT_EQUAL(m->fcr, 0xc1);
	cme__uart_state__free_unpacked(m, NULL);
	/* And the guest sees it: the scratch register and the FIFO, oldest byte first. */
	CU_ASSERT_EQUAL(pio(vm, UART_COM1_BASE + UART_SCR, false, 0, NULL), 0x5a);
	CU_ASSERT_EQUAL(pio(vm, UART_COM1_BASE, false, 0, NULL), 'i');
	CU_ASSERT_EQUAL(pio(vm, UART_COM1_BASE, false, 0, NULL), '\n');
	CU_ASSERT_EQUAL(pio(vm, UART_COM1_BASE, false, 0, NULL), 0x00);
	CU_ASSERT_EQUAL(pio(vm, UART_COM1_BASE, false, 0, NULL), 0xff);
	CU_ASSERT_EQUAL(pio(vm, UART_COM1_BASE + UART_LSR, false, 0, NULL) & UART_LSR_DR, 0);
	arena_free(&a);
	cme__device_state__free_unpacked(old, NULL);
	unit_vm_free(vm);
}

static void test_dispatch(void)
{
	struct vm *vm = fake_vm();
	uint8_t data[8] = { 0 };
	struct dev_access mmio = { .addr = 0xd0000000, .size = 4, .data = data };
	struct vm_end e;
	bool hit;

	pio(vm, UART_COM1_BASE + UART_SCR, true, 0x42, &hit);
	CU_ASSERT_TRUE(hit);
	CU_ASSERT_EQUAL(pio(vm, UART_COM1_BASE + UART_SCR, false, 0, NULL), 0x42);
	CU_ASSERT_EQUAL(pio(vm, UART_COM1_BASE + UART_LSR, false, 0, NULL),
			UART_LSR_THRE | UART_LSR_TEMT);
	pio(vm, 0x2f8, false, 0, &hit); /* COM2: nobody */
	CU_ASSERT_FALSE(hit);
	CU_ASSERT_FALSE(dev_dispatch(vm, DEV_MMIO, &mmio));
	CU_ASSERT_EQUAL(pio(vm, VM_EXIT_PORT, false, 0, &hit), 0xff); /* reads float */
	CU_ASSERT_TRUE(hit);
	CU_ASSERT_EQUAL(pio(vm, VM_I8042_PORT, false, 0x55, NULL), 0); /* idle controller */
	CU_ASSERT_EQUAL(pio(vm, VM_I8042_PORT - 4, false, 0x55, NULL), 0);
	pio(vm, VM_RESET_PORT, true, 0x02, NULL);	   /* no reset bit */
	pio(vm, VM_SLEEP_PORT, true, 0x20 | 3 << 2, NULL); /* S3: not ours */
	pio(vm, VM_I8042_PORT - 4, true, 0xfe, NULL);	   /* 0xfe to the data port: nothing */
	CU_ASSERT_EQUAL(ended(vm, &e), VM_END_NONE);
	pio(vm, VM_I8042_PORT, true, 0xfe, NULL);
	CU_ASSERT_EQUAL(ended(vm, &e), VM_END_REBOOT);
	CU_ASSERT_STRING_EQUAL(e.detail, "guest rebooted (i8042 reset)");
	pio(vm, VM_EXIT_PORT, true, 7, NULL); /* the first end wins */
	CU_ASSERT_EQUAL(ended(vm, &e), VM_END_REBOOT);
	unit_vm_free(vm);
}

/* Each way a guest ends, on a VM of its own. */
static void test_power_ports(void)
{
	static const struct {
		uint16_t port;
		uint8_t val;
		enum vm_end_reason want;
		int code;
	} cases[] = {
		{ VM_EXIT_PORT, 7, VM_END_GUEST_EXIT, 7 },
		{ VM_RESET_PORT, VM_RESET_VALUE, VM_END_REBOOT, 0 },
		{ VM_SLEEP_PORT, 0x20 | 5 << 2, VM_END_POWEROFF, 0 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct vm *vm = fake_vm();
		struct vm_end e;

		uint8_t data[4] = { cases[i].val, 0, 0, 0 };
		struct dev_access a = {
			.addr = cases[i].port, .size = 1, .write = true, .data = data
		};
		struct dev_access uart = {
			.addr = UART_COM1_BASE, .size = 1, .write = true, .data = data
		};

		CU_ASSERT_TRUE(dev_dispatch(vm, DEV_PIO, &a));
		CU_ASSERT_TRUE(a.stop); /* this vCPU goes no further */
		CU_ASSERT_EQUAL(ended(vm, &e), cases[i].want);
		CU_ASSERT_EQUAL(e.code, cases[i].code);
		/* The rest of a string of console output still goes out. */
		CU_ASSERT_TRUE(dev_dispatch(vm, DEV_PIO, &uart));
		CU_ASSERT_FALSE(uart.stop);
		unit_vm_free(vm);
	}
}

/* Load one section built from a UartState, or with raw bytes; returns the reason. */
static int load_uart(const Cme__UartState *m, const char *name, uint32_t version, char *err,
		     size_t errlen)
{
	Cme__DeviceState s = CME__DEVICE_STATE__INIT, *ps = &s;
	uint8_t buf[256];
	struct vm *vm = fake_vm();
	int rc;

	s.name = (char *)name;
	s.version = version;
	if (m) {
		s.state.len = cme__uart_state__pack(m, buf);
		s.state.data = buf;
	} else {
		memset(buf, 0xee, 16); /* not a message */
		s.state.len = 16;
		s.state.data = buf;
	}
	err[0] = 0;
	rc = dev_state_load_all(vm, &ps, 1, err, errlen);
	unit_vm_free(vm);
	return rc;
}

static void test_state_refusals(void)
{
	Cme__UartState m = CME__UART_STATE__INIT;
	uint8_t rx[17] = { 0 };
	char err[256];

	CU_ASSERT_EQUAL(load_uart(&m, "uart", 1, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(load_uart(&m, "virtio-blk", 1, err, sizeof(err)), -EINVAL);
	CU_ASSERT_STRING_EQUAL(err, "state has a device \"virtio-blk\" this VM lacks");
	CU_ASSERT_EQUAL(load_uart(&m, "exit", 1, err, sizeof(err)), -EINVAL); /* no state */
	CU_ASSERT_EQUAL(load_uart(&m, "uart", 2, err, sizeof(err)), -EINVAL);
	CU_ASSERT_STRING_EQUAL(err, "uart state version 2 unknown");
	CU_ASSERT_EQUAL(load_uart(NULL, "uart", 1, err, sizeof(err)), -EINVAL);
	CU_ASSERT_STRING_EQUAL(err, "uart state: malformed");
	m.ier = 300;
	CU_ASSERT_EQUAL(load_uart(&m, "uart", 1, err, sizeof(err)), -EINVAL);
	CU_ASSERT_STRING_EQUAL(err, "uart state: m->ier = 300 out of range");
	m.ier = 0;
	m.port = 0x2f8; /* saved by a UART elsewhere: must not change */
	CU_ASSERT_EQUAL(load_uart(&m, "uart", 1, err, sizeof(err)), -EINVAL);
	CU_ASSERT_STRING_EQUAL(err, "uart state: m->port is 760, this VM has 1016");
	m.port = UART_COM1_BASE;
	m.rx.data = rx;
	m.rx.len = sizeof(rx);
	CU_ASSERT_EQUAL(load_uart(&m, "uart", 1, err, sizeof(err)), -EINVAL);
	CU_ASSERT_STRING_EQUAL(err, "uart state: receive FIFO of 17 bytes");
}

/* Capturing state must fail, not abort, when memory runs out. */
static void test_arena_oom(void)
{
	struct arena a = { 0 };
	uint8_t *p;

	CU_ASSERT_PTR_NOT_NULL(arena_alloc(&a, 16));
	CU_ASSERT_FALSE(a.failed);
	CU_ASSERT_PTR_NULL(arena_alloc(&a, SIZE_MAX / 2));
	CU_ASSERT_TRUE(a.failed);
	CU_ASSERT_PTR_NULL(arena_dup(&a, &a, SIZE_MAX / 2));
	p = arena_dup(&a, "abc", 4);
	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	CU_ASSERT_STRING_EQUAL((char *)p, "abc");
	CU_ASSERT_TRUE(a.failed); /* sticky until freed */
	arena_free(&a);
	CU_ASSERT_FALSE(a.failed);
	CU_ASSERT_EQUAL(a.n, 0);
}

void suite_devices(void)
{
	static const struct test_case cases[] = {
		{ "a UART state saved before the device model restores", test_old_uart_state },
		{ "guest accesses reach the device that claims them", test_dispatch },
		{ "exit, reset and poweroff ports end the VM", test_power_ports },
		{ "bad device state is refused with a reason", test_state_refusals },
		{ "state arena: out of memory fails, never aborts", test_arena_oom },
		{ NULL, NULL },
	};
	test_add_suite("devices", cases);
}
