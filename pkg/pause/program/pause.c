/*
 * cri-shim-pause: the process that holds a pod's namespaces.
 *
 * It sleeps until SIGTERM or SIGINT (then exits 0) and, as PID 1 of a pod
 * that shares its PID namespace, lets the kernel reap every orphan: SIGCHLD
 * is ignored with SA_NOCLDWAIT, so children never become zombies.
 *
 * It is built without libc (gcc -static -nostdlib) because a node runs one
 * per pod: the whole process costs a few pages (~10 KiB PSS), where a Go
 * pause costs ~0.6 MiB and glibc's static startup ~0.35 MiB.
 */

#define SIGINT 2
#define SIGTERM 15
#define SIGCHLD 17
#define SA_NOCLDWAIT 0x00000002UL
#define SA_RESTORER 0x04000000UL
#define SIG_IGN ((void *)1)

struct kernel_sigaction {
	void *handler;
	unsigned long flags;
	void *restorer;
	unsigned long mask;
};

#if defined(__x86_64__)
#define NR_rt_sigaction 13
#define NR_rt_sigsuspend 130
#define NR_exit_group 231
static long syscall4(long n, long a, long b, long c, long d)
{
	long ret;
	register long r10 __asm__("r10") = d;
	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10)
			 : "rcx", "r11", "memory");
	return ret;
}
/* x86-64 delivers a handled signal only with a restorer (rt_sigreturn). */
void restorer(void);
__asm__(".text\n.globl restorer\nrestorer:\n\tmov $15, %eax\n\tsyscall\n");
#define RESTORER_FLAG SA_RESTORER
#define RESTORER ((void *)restorer)
#elif defined(__aarch64__)
#define NR_rt_sigaction 134
#define NR_rt_sigsuspend 133
#define NR_exit_group 94
static long syscall4(long n, long a, long b, long c, long d)
{
	register long x8 __asm__("x8") = n;
	register long x0 __asm__("x0") = a;
	register long x1 __asm__("x1") = b;
	register long x2 __asm__("x2") = c;
	register long x3 __asm__("x3") = d;
	__asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3) : "memory");
	return x0;
}
/* arm64 returns from handlers through the vDSO's trampoline. */
#define RESTORER_FLAG 0UL
#define RESTORER ((void *)0)
#else
#error "cri-shim-pause supports x86_64 and aarch64"
#endif

static void on_stop(int sig)
{
	(void)sig;
	syscall4(NR_exit_group, 0, 0, 0, 0);
}

__attribute__((force_align_arg_pointer, noreturn)) void _start(void)
{
	struct kernel_sigaction ign = {SIG_IGN, SA_NOCLDWAIT | RESTORER_FLAG, RESTORER, 0};
	struct kernel_sigaction stop = {(void *)on_stop, RESTORER_FLAG, RESTORER, 0};
	unsigned long empty = 0;

	syscall4(NR_rt_sigaction, SIGCHLD, (long)&ign, 0, sizeof(unsigned long));
	syscall4(NR_rt_sigaction, SIGTERM, (long)&stop, 0, sizeof(unsigned long));
	syscall4(NR_rt_sigaction, SIGINT, (long)&stop, 0, sizeof(unsigned long));
	for (;;)
		syscall4(NR_rt_sigsuspend, (long)&empty, sizeof(empty), 0, 0);
}
