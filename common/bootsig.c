/* Signed boot (common.h): an Ed25519 signature of a boot's measurement (measure.c) by a
 * trusted key lets the VMM boot it (cme-vmm run --trust KEYS --boot-sig SIG); anything
 * else is refused before the guest's first instruction. The commands that make and check
 * them are shared by cme-vmm (measure, signkey, sign) and cmectl (image ...).
 *
 * Files, one line of hex each: a public key (64 digits); a secret key (128, mode 0600); a
 * trust file (a public key per line, '#' comments); a boot signature ("PUBKEY SIG"). The
 * message signed is "cme-boot-v1" and the 32 bytes of the measurement. */
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SIGN_CONTEXT "cme-boot-v1"
#define PK_HEX	     (2 * crypto_sign_PUBLICKEYBYTES)
#define SIG_HEX	     (2 * crypto_sign_BYTES)

static void signed_message(const uint8_t m[MEASURE_BYTES], uint8_t *msg)
{
	memcpy(msg, SIGN_CONTEXT, sizeof(SIGN_CONTEXT) - 1);
	memcpy(msg + sizeof(SIGN_CONTEXT) - 1, m, MEASURE_BYTES);
}

static bool hex_field(const char *hex, size_t digits, uint8_t *out)
{
	size_t bin = 0;

	return strspn(hex, "0123456789abcdefABCDEF") == digits &&
	       !sodium_hex2bin(out, digits / 2, hex, digits, NULL, &bin, NULL) && bin == digits / 2;
}

/* digits hex digits at the start of hex (more may follow) into out. */
static bool hex_field_n(const char *hex, size_t digits, uint8_t *out)
{
	size_t bin = 0;

	return !sodium_hex2bin(out, digits / 2, hex, digits, NULL, &bin, NULL) && bin == digits / 2;
}

/* Whether pk is one of the trust file's keys. */
static int trusted(const char *path, const uint8_t *pk, char *err, size_t len)
{
	FILE *f = fopen(path, "r");
	char line[512];
	int found = 0, n = 0;

	if (!f) {
		snprintf(err, len, "--trust %s: %s", path, strerror(errno));
		return -errno;
	}
	while (!found && fgets(line, sizeof(line), f)) {
		uint8_t k[crypto_sign_PUBLICKEYBYTES];
		char *p = line + strspn(line, " \t");

		p[strcspn(p, "#\r\n")] = 0;
		if (!*p)
			continue;
		n++;
		found = hex_field(p, PK_HEX, k) && !sodium_memcmp(k, pk, sizeof(k));
	}
	fclose(f);
	if (!n) {
		snprintf(err, len, "--trust %s holds no public key", path);
		return -EINVAL;
	}
	return found;
}

int boot_verify(const uint8_t m[MEASURE_BYTES], const char *trust, const char *sigfile, char *err,
		size_t len)
{
	uint8_t pk[crypto_sign_PUBLICKEYBYTES], sig[crypto_sign_BYTES];
	uint8_t msg[sizeof(SIGN_CONTEXT) - 1 + MEASURE_BYTES];
	char line[PK_HEX + SIG_HEX + 8] = "", hex[2 * MEASURE_BYTES + 1];
	FILE *f;
	int rc;

	if (!sigfile) {
		snprintf(err, len, "--trust needs --boot-sig (the boot's signature)");
		return -EINVAL;
	}
	f = fopen(sigfile, "r");
	if (!f || !fgets(line, sizeof(line), f) || strlen(line) < PK_HEX + 1 + SIG_HEX ||
	    !hex_field(line, PK_HEX, pk) || line[PK_HEX] != ' ' ||
	    !hex_field(line + PK_HEX + 1, SIG_HEX, sig)) {
		snprintf(err, len, "--boot-sig %s: %s", sigfile,
			 f ? "not a boot signature (cme-vmm sign, cmectl image sign write them)"
			   : strerror(errno));
		if (f)
			fclose(f);
		return -EINVAL;
	}
	fclose(f);
	rc = trusted(trust, pk, err, len);
	if (rc < 0)
		return rc;
	if (!rc) {
		snprintf(err, len, "boot refused: %s is signed by a key --trust %s does not hold",
			 sigfile, trust);
		return -EACCES;
	}
	signed_message(m, msg);
	if (crypto_sign_verify_detached(sig, msg, sizeof(msg), pk)) {
		measure_hex(m, hex);
		snprintf(err, len,
			 "boot refused: the measurement %.16s... is not what %s signed (the image, "
			 "kernel, initrd or command line differ)",
			 hex, sigfile);
		return -EACCES;
	}
	return 0;
}

/* ---- the cluster's trust record ------------------------------------------------------ */

#define TRUST_CONTEXT "cme-trust-v1"
#define TRUST_MAX     16

/* keys ("HEX,HEX,..."), each a public key, into bin; how many, or -EINVAL. */
static int trust_keys(const char *keys, uint8_t bin[TRUST_MAX][crypto_sign_PUBLICKEYBYTES])
{
	int n = 0;

	for (const char *p = keys; *p; p += PK_HEX + (p[PK_HEX] == ',')) {
		if (n == TRUST_MAX || strspn(p, "0123456789abcdefABCDEF") < PK_HEX ||
		    (p[PK_HEX] && p[PK_HEX] != ',') || !hex_field_n(p, PK_HEX, bin[n]))
			return -EINVAL;
		n++;
	}
	return n ? n : -EINVAL;
}

/* "cme-trust-v1", the cluster's prefix and a 0 byte (a record of one cluster is none of
 * another's), seq (8 bytes, little-endian), each key's 32 bytes: into msg. */
#define TRUST_PREFIX_MAX 256
static size_t trust_message(const char *prefix, uint64_t seq,
			    uint8_t keys[TRUST_MAX][crypto_sign_PUBLICKEYBYTES], int n,
			    uint8_t *msg)
{
	size_t off = sizeof(TRUST_CONTEXT) - 1, plen = strnlen(prefix, TRUST_PREFIX_MAX - 1);

	memcpy(msg, TRUST_CONTEXT, off);
	memcpy(msg + off, prefix, plen);
	off += plen;
	msg[off++] = 0;
	for (int i = 0; i < 8; i++)
		msg[off++] = (uint8_t)(seq >> (8 * i));
	for (int i = 0; i < n; i++, off += crypto_sign_PUBLICKEYBYTES)
		memcpy(msg + off, keys[i], crypto_sign_PUBLICKEYBYTES);
	return off;
}

/* A secret key file only its owner may read, into sk. */
static int load_sk(const char *path, uint8_t sk[crypto_sign_SECRETKEYBYTES], char *err, size_t len)
{
	char line[2 * crypto_sign_SECRETKEYBYTES + 8] = "";
	FILE *f = fopen(path, "r");
	struct stat st;
	bool ok = f && fstat(fileno(f), &st) == 0 && !(st.st_mode & 077) &&
		  fgets(line, sizeof(line), f) &&
		  hex_field(line, 2 * crypto_sign_SECRETKEYBYTES, sk);

	if (f)
		fclose(f);
	sodium_memzero(line, sizeof(line));
	if (!ok)
		snprintf(err, len, "%s is not a secret key only its owner may read", path);
	return ok ? 0 : -EACCES;
}

int trust_sign(const char *sk_file, const char *prefix, uint64_t seq, const char *keys,
	       char signer[65], char sig[129], char *err, size_t len)
{
	uint8_t bin[TRUST_MAX][crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
	uint8_t msg[sizeof(TRUST_CONTEXT) + TRUST_PREFIX_MAX + 8 + sizeof(bin)],
		s[crypto_sign_BYTES];
	int n = trust_keys(keys, bin);

	if (n < 0)
		return snprintf(err, len, "not a list of 1 to 16 public keys"), -EINVAL;
	if (load_sk(sk_file, sk, err, len))
		return -EACCES;
	crypto_sign_detached(s, NULL, msg, trust_message(prefix, seq, bin, n, msg), sk);
	sodium_bin2hex(signer, PK_HEX + 1,
		       sk + crypto_sign_SECRETKEYBYTES - crypto_sign_PUBLICKEYBYTES,
		       crypto_sign_PUBLICKEYBYTES);
	sodium_bin2hex(sig, SIG_HEX + 1, s, sizeof(s));
	sodium_memzero(sk, sizeof(sk));
	return 0;
}

int trust_verify(const char *operator_keys, const char *prefix, uint64_t seq, const char *keys,
		 const char *signer, const char *sig, char *err, size_t len)
{
	uint8_t bin[TRUST_MAX][crypto_sign_PUBLICKEYBYTES], pk[crypto_sign_PUBLICKEYBYTES];
	uint8_t msg[sizeof(TRUST_CONTEXT) + TRUST_PREFIX_MAX + 8 + sizeof(bin)],
		s[crypto_sign_BYTES];
	int n = trust_keys(keys, bin), rc;

	if (n < 0 || strlen(signer) != PK_HEX || !hex_field(signer, PK_HEX, pk) ||
	    strlen(sig) != SIG_HEX || !hex_field(sig, SIG_HEX, s))
		return snprintf(err, len, "the trust record is malformed"), -EINVAL;
	rc = trusted(operator_keys, pk, err, len);
	if (rc < 0)
		return rc;
	if (!rc)
		return snprintf(err, len,
				"the trust record is signed by %.16s..., not an operator "
				"key of this node",
				signer),
		       -EACCES;
	if (crypto_sign_verify_detached(s, msg, trust_message(prefix, seq, bin, n, msg), pk))
		return snprintf(err, len,
				"the trust record's signature does not match its keys "
				"and seq (changed after it was signed)"),
		       -EACCES;
	return 0;
}

/* ---- commands ------------------------------------------------------------------------ */

static int extend_file(uint8_t m[MEASURE_BYTES], const char *what, const char *path)
{
	struct stat st;
	uint8_t *buf = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc = 0;

	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size == 0 ||
	    !(buf = malloc((size_t)st.st_size)) || read_full(fd, buf, (size_t)st.st_size)) {
		fprintf(stderr, "%s %s: cannot read it\n", what, path);
		rc = -EIO;
	} else {
		measure_extend(m, what, buf, (size_t)st.st_size);
	}
	free(buf);
	if (fd >= 0)
		close(fd);
	return rc;
}

struct boot_files {
	const char *image, *kernel, *initrd, *cmdline, *key, *out, *trust, *sig;
};

static int boot_parse(int argc, char **argv, struct boot_files *b, bool sign, bool verify)
{
	static const struct option opts[] = {
		{ "image", required_argument, NULL, 'i' },
		{ "kernel", required_argument, NULL, 'k' },
		{ "initrd", required_argument, NULL, 'r' },
		{ "cmdline", required_argument, NULL, 'l' },
		{ "key", required_argument, NULL, 'K' },
		{ "out", required_argument, NULL, 'o' },
		{ "trust", required_argument, NULL, 't' },
		{ "sig", required_argument, NULL, 's' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	memset(b, 0, sizeof(*b));
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
		switch (c) {
		case 'i': b->image = optarg; break;
		case 'k': b->kernel = optarg; break;
		case 'r': b->initrd = optarg; break;
		case 'l': b->cmdline = optarg; break;
		case 'K': b->key = optarg; break;
		case 'o': b->out = optarg; break;
		case 't': b->trust = optarg; break;
		case 's': b->sig = optarg; break;
		default: return -EINVAL;
		}
	}
	if (optind < argc || !b->image == !b->kernel || (b->initrd && !b->kernel) ||
	    (sign != !!(b->key && b->out)) || (verify != !!(b->trust && b->sig)) ||
	    (!sign && (b->key || b->out)) || (!verify && (b->trust || b->sig)))
		return -EINVAL;
	return 0;
}

static int boot_measure(const struct boot_files *b, uint8_t m[MEASURE_BYTES])
{
	measure_init(m);
	if (extend_file(m, b->image ? "image" : "kernel", b->image ? b->image : b->kernel) ||
	    (b->initrd && extend_file(m, "initrd", b->initrd)))
		return -EIO;
	measure_extend(m, "cmdline", b->cmdline ? b->cmdline : "",
		       b->cmdline ? strlen(b->cmdline) : 0);
	return 0;
}

int boot_cmd_measure(int argc, char **argv)
{
	uint8_t m[MEASURE_BYTES];
	char hex[2 * MEASURE_BYTES + 1];
	struct boot_files b;

	if (boot_parse(argc, argv, &b, false, false)) {
		fprintf(stderr,
			"usage: %s (--image FILE | --kernel FILE [--initrd FILE]) "
			"[--cmdline STR]\n",
			argv[0]);
		return 2;
	}
	if (boot_measure(&b, m))
		return 1;
	measure_hex(m, hex);
	printf("%s\n", hex);
	return 0;
}

/* Write text to a new file of the given mode (never over an existing one). */
static int write_new(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
	int rc = fd < 0 ? -errno : write_all(fd, text, strlen(text));

	if (fd >= 0 && !rc && fsync(fd) < 0)
		rc = -errno;
	if (fd >= 0)
		close(fd);
	if (rc)
		fprintf(stderr, "%s: %s\n", path, strerror(-rc));
	return rc;
}

int boot_cmd_keygen(int argc, char **argv)
{
	uint8_t pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
	char pkh[PK_HEX + 2], skh[2 * crypto_sign_SECRETKEYBYTES + 2];
	int rc;

	if (argc != 3) {
		fprintf(stderr, "usage: %s SECRET-FILE PUBLIC-FILE\n", argv[0]);
		return 2;
	}
	crypto_sign_keypair(pk, sk);
	sodium_bin2hex(pkh, sizeof(pkh) - 1, pk, sizeof(pk));
	sodium_bin2hex(skh, sizeof(skh) - 1, sk, sizeof(sk));
	strcat(pkh, "\n");
	strcat(skh, "\n");
	rc = write_new(argv[1], skh, 0600);
	if (!rc && (rc = write_new(argv[2], pkh, 0644)))
		unlink(argv[1]);
	sodium_memzero(sk, sizeof(sk));
	sodium_memzero(skh, sizeof(skh));
	return rc ? 1 : 0;
}

int boot_cmd_sign(int argc, char **argv)
{
	uint8_t m[MEASURE_BYTES], sk[crypto_sign_SECRETKEYBYTES], sig[crypto_sign_BYTES];
	uint8_t msg[sizeof(SIGN_CONTEXT) - 1 + MEASURE_BYTES];
	char out[PK_HEX + SIG_HEX + 4], err[300];
	struct boot_files b;

	if (boot_parse(argc, argv, &b, true, false)) {
		fprintf(stderr,
			"usage: %s --key SECRET-FILE (--image FILE | --kernel FILE "
			"[--initrd FILE]) [--cmdline STR] --out SIG-FILE\n",
			argv[0]);
		return 2;
	}
	if (load_sk(b.key, sk, err, sizeof(err))) {
		fprintf(stderr, "%s: %s\n", argv[0], err);
		return 1;
	}
	if (boot_measure(&b, m))
		return 1;
	signed_message(m, msg);
	crypto_sign_detached(sig, NULL, msg, sizeof(msg), sk);
	sodium_bin2hex(out, PK_HEX + 1,
		       sk + crypto_sign_SECRETKEYBYTES - crypto_sign_PUBLICKEYBYTES,
		       crypto_sign_PUBLICKEYBYTES);
	out[PK_HEX] = ' ';
	sodium_bin2hex(out + PK_HEX + 1, SIG_HEX + 1, sig, sizeof(sig));
	strcat(out, "\n");
	sodium_memzero(sk, sizeof(sk));
	return write_new(b.out, out, 0644) ? 1 : 0;
}

int boot_cmd_verify(int argc, char **argv)
{
	uint8_t m[MEASURE_BYTES];
	char hex[2 * MEASURE_BYTES + 1], err[512];
	struct boot_files b;

	if (boot_parse(argc, argv, &b, false, true)) {
		fprintf(stderr,
			"usage: %s --trust KEYS-FILE --sig SIG-FILE (--image FILE | --kernel "
			"FILE [--initrd FILE]) [--cmdline STR]\n",
			argv[0]);
		return 2;
	}
	if (boot_measure(&b, m))
		return 1;
	if (boot_verify(m, b.trust, b.sig, err, sizeof(err))) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	measure_hex(m, hex);
	printf("ok: %s is signed by a key of %s; measurement %s\n", b.sig, b.trust, hex);
	return 0;
}
