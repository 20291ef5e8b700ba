/* Placing pre-copy pages on the destination (contract in stream_priv.h). A page of guest
 * RAM that was never touched costs the kernel a fault and a page of zeros before the
 * received bytes overwrite it — on the nested machines here that is most of a
 * migration's time on the destination. With guest RAM registered with userfaultfd
 * (missing pages), UFFDIO_COPY instead allocates the page and copies the bytes into it in
 * one step, a whole run of pages per call, and never zeroes it first. A page already there
 * (sent again in a later round) is copied over in place.
 *
 * While registered, any other touch of a missing page would wait for a handler: a thread
 * answers every such fault with the zero page (what an unreceived page holds), so nothing
 * can hang on it. */
#include "stream_priv.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

struct mig_place {
	int uffd, stop_fd;
	pthread_t thread;
	bool started;
};

/* Any fault while registered: the zero page (or a wake, when the page came meanwhile). */
static void *place_faults(void *arg)
{
	struct mig_place *pl = arg;

	sandbox_enter(SANDBOX_MIGRATION);
	for (;;) {
		struct pollfd f[2] = { { pl->stop_fd, POLLIN, 0 }, { pl->uffd, POLLIN, 0 } };
		struct uffd_msg msg;

		if (poll(f, 2, -1) < 0 && errno != EINTR)
			break;
		if (f[0].revents)
			break;
		if (!f[1].revents || read(pl->uffd, &msg, sizeof(msg)) != sizeof(msg) ||
		    msg.event != UFFD_EVENT_PAGEFAULT)
			continue;
		uint64_t page = msg.arg.pagefault.address & ~(VM_PAGE_SIZE - 1);
		struct uffdio_zeropage z = { { page, VM_PAGE_SIZE }, 0, 0 };
		struct uffdio_range r = { page, VM_PAGE_SIZE };

		if (ioctl(pl->uffd, UFFDIO_ZEROPAGE, &z) < 0 && errno == EEXIST &&
		    ioctl(pl->uffd, UFFDIO_WAKE, &r) < 0)
			log_debug("mig", "cannot wake a fault at 0x%llx", (unsigned long long)page);
	}
	return NULL;
}

static int place_register(struct mig_place *pl, struct vm *vm)
{
	struct uffdio_api api = { .api = UFFD_API };

	pl->uffd = uffd_create(O_CLOEXEC | O_NONBLOCK);
	if (pl->uffd < 0 || ioctl(pl->uffd, UFFDIO_API, &api) < 0)
		return -errno;
	for (unsigned i = 0; i < vm_nr_slots(vm); i++) {
		struct vm_slot s;

		vm_get_slot(vm, i, &s);
		struct uffdio_register r = { .range = { (uintptr_t)s.hva, s.size },
					     .mode = UFFDIO_REGISTER_MODE_MISSING };

		if (ioctl(pl->uffd, UFFDIO_REGISTER, &r) < 0)
			return -errno;
	}
	pl->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	return pl->stop_fd < 0 ? -errno : 0;
}

int mig_place_start(struct vm *vm, struct mig_place **out)
{
	struct mig_place *pl = calloc(1, sizeof(*pl));
	int rc;

	if (!pl)
		return -ENOMEM;
	pl->uffd = pl->stop_fd = -1;
	rc = place_register(pl, vm);
	if (!rc)
		rc = -pthread_create(&pl->thread, NULL, place_faults, pl);
	pl->started = rc == 0;
	if (rc) {
		mig_place_stop(pl);
		return rc;
	}
	*out = pl;
	return 0;
}

int mig_place_copy(struct mig_place *pl, uint8_t *hva, const uint8_t *src, uint32_t pages)
{
	uint64_t done = 0, len = (uint64_t)pages * VM_PAGE_SIZE;

	while (done < len) {
		struct uffdio_copy c = { (uintptr_t)hva + done, (uintptr_t)src + done, len - done,
					 0, 0 };

		if (ioctl(pl->uffd, UFFDIO_COPY, &c) == 0)
			return 0;
		if (errno == EAGAIN && c.copy > 0) { /* stopped at a page already there */
			done += (uint64_t)c.copy;
		} else if (errno == EEXIST) { /* there already: a page sent again */
			memcpy(hva + done, src + done, VM_PAGE_SIZE);
			done += VM_PAGE_SIZE;
		} else {
			return -errno;
		}
	}
	return 0;
}

bool mig_place_zero(struct mig_place *pl, uint8_t *hva)
{
	struct uffdio_zeropage z = { { (uintptr_t)hva, VM_PAGE_SIZE }, 0, 0 };

	return ioctl(pl->uffd, UFFDIO_ZEROPAGE, &z) == 0;
}

void mig_place_stop(struct mig_place *pl)
{
	uint64_t one = 1;

	if (!pl)
		return;
	if (pl->started && write(pl->stop_fd, &one, sizeof(one)) == sizeof(one))
		pthread_join(pl->thread, NULL);
	if (pl->uffd >= 0)
		close(pl->uffd); /* unregisters: from here the kernel's own faults again */
	if (pl->stop_fd >= 0)
		close(pl->stop_fd);
	free(pl);
}
