"""The kernelyard kernel: a concurrent IPython kernel (protocol 5.5).

Run it with ``python -m kernelyard.kernel -f CONNECTION_FILE`` (what the
``kernelyard`` kernelspec does) or ``kernelyard kernel -f ...``.

Thread model
============

Every ZeroMQ socket is used by exactly one thread.

main
    The main shell's asyncio loop (:class:`~.worker.ShellWorker`): every
    shell request without a ``subshell_id``. Cells run here, so SIGINT raises
    KeyboardInterrupt in blocking code; an awaiting cell is cancelled instead
    (:mod:`.interrupts`). Owns no socket.
kernelyard-io
    Owns the shell, control and stdin ROUTERs and the iopub XPUB
    (:mod:`kernelyard.transport.kernel_io`): decodes requests and hands them
    to the workers, writes every outgoing message, sends ``iopub_welcome`` to
    new subscribers, runs the output-batching timers, watches the parent
    process (a pidfd).
kernelyard-hb
    Owns the heartbeat ROUTER, echoed by libzmq's proxy without the GIL.
kernelyard-control
    Control requests: kernel_info, interrupt, shutdown, subshell
    create/delete/list; hands debug requests to the debugger thread. Never
    runs user code. Owns no socket.
kernelyard-debugger
    Started by the first ``debug_request`` (:mod:`.debugger`): an asyncio
    loop serving debug requests in order, and the TCP connection to
    debugpy's adapter (not a ZeroMQ socket). Never runs user code: it reads
    variables on the main shell's loop, or asks debugpy, which evaluates on
    the stopped thread. debugpy traces the main and subshell threads only;
    the kernel's own threads are marked ``pydev_do_not_trace``.
kernelyard-subshell-<id>
    One per subshell (JEP 91): its own asyncio loop and execute queue, sharing
    the user namespace. Owns no socket.
kernelyard-fd-capture
    Reads the pipes that file descriptors 1 and 2 now lead to (output of
    subprocesses and C code, :mod:`.fdcapture`) and publishes it; an execute
    drains them itself before its reply. Owns no socket.
kernelyard-warm-up
    Imports IPython once at start, then ends.

Outgoing messages from any thread are queued to the I/O thread in call order.
Output (``print``) is coalesced per request by :mod:`.publisher` and never
dropped. Within a shell, execute requests run one at a time, in order; other
requests (comm messages, completion, ...) run as their own tasks on that
shell's loop, so they are answered while a cell awaits.

The parts of the kernel are not written against :class:`~.kernel.Kernel`:
each takes it as a small protocol of :mod:`.services` that states what that
part may use, and from which thread.
"""

__all__: list[str] = []
