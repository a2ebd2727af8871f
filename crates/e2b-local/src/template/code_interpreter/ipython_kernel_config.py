# IPython kernels of code-interpreter sandboxes (installed as /etc/ipython/ipython_kernel_config.py,
# read by every IPython kernel on the system).
c = get_config()  # noqa: F821

# Tracebacks without ANSI colours: they are returned to the SDK as plain text.
c.InteractiveShell.colors = "NoColor"
# Show whole collections in results (IPython truncates them at 1000 items otherwise).
c.PlainTextFormatter.max_seq_length = 0
# E2B's extra result formats (e2b/data, e2b/chart, JSON for lists and dicts).
c.InteractiveShellApp.exec_files = ["/usr/local/share/e2b/code_interpreter_formatters.py"]
