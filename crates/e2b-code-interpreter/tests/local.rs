//! End to end through the embedded local E2B host (`e2b::local`) and the real code
//! interpreter server in `code-interpreter-v1` sandboxes. Needs root (sandboxes use
//! namespaces) and the template, which the first create builds from Debian's archive and PyPI
//! (minutes; the server answers 503 meanwhile), so every test is ignored unless asked for:
//!
//! ```sh
//! cargo test -p e2b-code-interpreter --all-features --test local -- --ignored
//! ```
//!
//! With `E2B_API_URL` (or `E2B_API_KEY`) set they use that server instead, e.g. an
//! `e2b-local serve` whose data directory keeps the built template across runs:
//!
//! ```sh
//! eval "$(e2b-local serve --data-dir /var/tmp/e2b-local | grep ^export)"   # in another shell
//! ```
//!
//! `scripts/test` runs them when the registries answer. The tests sit in the module
//! `code_interpreter_v1`, so that a run of every ignored test can leave them out with
//! `--skip code_interpreter_v1`.

mod code_interpreter_v1 {
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use e2b::RunOptions;
    use e2b_code_interpreter::{CreateCodeContextOptions, RunCodeOptions, Sandbox};

    /// How long the first create may wait for the template to build.
    const BUILD_WAIT: Duration = Duration::from_secs(45 * 60);

    /// A `code-interpreter-v1` sandbox on the environment's server or the process-wide
    /// embedded host, waiting out the template's build (503s).
    async fn sandbox() -> Sandbox {
        let started = Instant::now();
        loop {
            match Sandbox::builder()
                .timeout(Duration::from_secs(600))
                .create()
                .await
            {
                Ok(sandbox) => return sandbox,
                Err(e) if e.http_status() == Some(503) && started.elapsed() < BUILD_WAIT => {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
                Err(e) => panic!("creating a code-interpreter-v1 sandbox: {e}"),
            }
        }
    }

    async fn run(sandbox: &Sandbox, code: &str) -> e2b_code_interpreter::Execution {
        sandbox.run_code(code, RunCodeOptions::new()).await.unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs root and the code-interpreter-v1 template (Debian's archive, PyPI)"]
    async fn stdout_and_stderr_stream_in_order() {
        let sandbox = sandbox().await;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (out, err) = (seen.clone(), seen.clone());
        let started = Instant::now();
        let execution = sandbox
            .run_code(
                "import sys, time\n\
                 print('one', flush=True)\n\
                 time.sleep(1)\n\
                 print('two', file=sys.stderr, flush=True)\n\
                 time.sleep(1)\n\
                 print('three', flush=True)",
                RunCodeOptions::new()
                    .on_stdout(move |m| {
                        out.lock()
                            .unwrap()
                            .push((m.line, m.error, started.elapsed()))
                    })
                    .on_stderr(move |m| {
                        err.lock()
                            .unwrap()
                            .push((m.line, m.error, started.elapsed()))
                    }),
            )
            .await
            .unwrap();
        let seen = seen.lock().unwrap().clone();
        let lines: Vec<(&str, bool)> = seen.iter().map(|(l, e, _)| (l.as_str(), *e)).collect();
        assert_eq!(
            lines,
            [("one\n", false), ("two\n", true), ("three\n", false)]
        );
        // Streamed: the first line arrived well before the run ended.
        assert!(
            seen[2].2 - seen[0].2 >= Duration::from_millis(1500),
            "{seen:?}"
        );
        assert_eq!(execution.logs.stdout, ["one\n", "three\n"]);
        assert_eq!(execution.logs.stderr, ["two\n"]);
        assert!(execution.error.is_none());
        assert!(execution.results.is_empty());
        sandbox.kill().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs root and the code-interpreter-v1 template (Debian's archive, PyPI)"]
    async fn main_result_state_and_execution_count() {
        let sandbox = sandbox().await;
        let execution = run(&sandbox, "1+1").await;
        assert_eq!(execution.text(), Some("2"));
        let [result] = &execution.results[..] else {
            panic!("{execution:?}")
        };
        assert!(result.is_main_result);
        assert_eq!(result.formats(), ["text"]);
        let first = execution.execution_count.expect("an execution count");

        run(&sandbox, "x = 40\nimport math").await;
        let execution = run(&sandbox, "x + 2, math.floor(2.5)").await;
        assert_eq!(execution.text(), Some("(42, 2)"));
        assert_eq!(execution.execution_count, Some(first + 2));
        sandbox.kill().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs root and the code-interpreter-v1 template (Debian's archive, PyPI)"]
    async fn a_matplotlib_figure_is_a_png_that_decodes() {
        let sandbox = sandbox().await;
        let execution = run(
            &sandbox,
            "import matplotlib.pyplot as plt\n\
             fig = plt.figure(figsize=(4, 3), dpi=100)\n\
             plt.plot([1, 2, 3], [1, 4, 9], label='squares')\n\
             plt.title('Squares')\n\
             plt.show()",
        )
        .await;
        assert!(execution.error.is_none(), "{:?}", execution.error);
        let figure = execution
            .results
            .iter()
            .find(|r| r.png.is_some())
            .unwrap_or_else(|| panic!("no PNG in {:?}", execution.results));
        assert!(!figure.is_main_result);
        let bytes = figure.png_bytes().unwrap().unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let reader = decoder.read_info().expect("a PNG that decodes");
        let mut reader = reader;
        let mut pixels = vec![0; reader.output_buffer_size()];
        let frame = reader
            .next_frame(&mut pixels)
            .expect("the PNG's pixels decode");
        // 4 × 3 inches at 100 dpi, cropped to the drawing by IPython's `bbox_inches='tight'`.
        assert!(
            (100..=400).contains(&frame.width) && (100..=300).contains(&frame.height),
            "{}x{}",
            frame.width,
            frame.height
        );
        assert!(figure.formats().contains(&"png".to_owned()));
        sandbox.kill().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs root and the code-interpreter-v1 template (Debian's archive, PyPI)"]
    async fn a_pandas_dataframe_is_html() {
        let sandbox = sandbox().await;
        let execution = run(
            &sandbox,
            "import pandas as pd\npd.DataFrame({'city': ['Oslo', 'Lima'], 'temp': [3, 19]})",
        )
        .await;
        let [result] = &execution.results[..] else {
            panic!("{execution:?}")
        };
        assert!(result.is_main_result);
        let html = result.html.as_deref().expect("HTML");
        assert!(html.contains("<table"), "{html}");
        assert!(
            html.contains("<td>Oslo</td>") && html.contains("<td>19</td>"),
            "{html}"
        );
        assert!(result.text.as_deref().unwrap().contains("Lima"));
        sandbox.kill().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs root and the code-interpreter-v1 template (Debian's archive, PyPI)"]
    async fn an_exception_has_name_value_and_traceback() {
        let sandbox = sandbox().await;
        let raised = Arc::new(Mutex::new(None));
        let seen = raised.clone();
        let execution = sandbox
            .run_code(
                "def divide(a, b):\n    return a / b\nprint('before')\ndivide(1, 0)",
                RunCodeOptions::new().on_error(move |e| *seen.lock().unwrap() = Some(e)),
            )
            .await
            .unwrap();
        let error = execution.error.clone().expect("an error");
        assert_eq!(error.name, "ZeroDivisionError");
        assert_eq!(error.value, "division by zero");
        assert!(error.traceback.contains("divide"), "{}", error.traceback);
        assert!(
            error.traceback.contains("ZeroDivisionError"),
            "{}",
            error.traceback
        );
        assert_eq!(raised.lock().unwrap().as_ref(), Some(&error));
        assert_eq!(execution.logs.stdout, ["before\n"]);
        assert!(execution.results.is_empty());
        sandbox.kill().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs root and the code-interpreter-v1 template (Debian's archive, PyPI)"]
    async fn a_timeout_interrupts_and_the_next_run_works() {
        let sandbox = sandbox().await;
        run(&sandbox, "kept = 'still here'").await;
        let started = Instant::now();
        let err = sandbox
            .run_code(
                "import time\nfor i in range(600):\n    time.sleep(0.1)",
                RunCodeOptions::new().timeout(Duration::from_secs(2)),
            )
            .await
            .unwrap_err();
        assert!(err.is_timeout(), "{err}");
        assert_eq!(
            err.to_string(),
            "Execution timed out — the 'timeout' option can be used to increase this timeout"
        );
        assert!(started.elapsed() < Duration::from_secs(10));
        // The kernel was interrupted, not restarted: the next run starts at once, state kept.
        let started = Instant::now();
        let execution = run(&sandbox, "kept").await;
        assert_eq!(execution.text(), Some("still here"));
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{:?}",
            started.elapsed()
        );
        sandbox.kill().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs root and the code-interpreter-v1 template (Debian's archive, PyPI)"]
    async fn contexts_are_isolated_and_restart_clears_state() {
        let sandbox = sandbox().await;
        let a = sandbox
            .create_code_context(CreateCodeContextOptions::new())
            .await
            .unwrap();
        let b = sandbox
            .create_code_context(CreateCodeContextOptions::new().cwd("/tmp"))
            .await
            .unwrap();
        assert_eq!(a.language, "python");
        assert_eq!(a.cwd, "/home/user");
        assert_eq!(b.cwd, "/tmp");
        assert_ne!(a.id, b.id);

        let in_a = |code: &'static str| sandbox.run_code(code, RunCodeOptions::new().context(&a));
        let in_b = |code: &'static str| sandbox.run_code(code, RunCodeOptions::new().context(&b));
        in_a("secret = 'a'").await.unwrap();
        let execution = in_b("secret").await.unwrap();
        assert_eq!(execution.error.expect("NameError in b").name, "NameError");
        let execution = in_b("import os; os.getcwd()").await.unwrap();
        assert_eq!(execution.text(), Some("/tmp"));
        // The default context does not see a's state either.
        let execution = run(&sandbox, "secret").await;
        assert_eq!(
            execution.error.expect("NameError in default").name,
            "NameError"
        );

        let ids: Vec<String> = sandbox
            .list_code_contexts()
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.id)
            .collect();
        assert!(ids.contains(&a.id) && ids.contains(&b.id), "{ids:?}");

        assert_eq!(in_a("secret").await.unwrap().text(), Some("a"));
        sandbox.restart_code_context(&a).await.unwrap();
        let execution = in_a("secret").await.unwrap();
        assert_eq!(execution.error.expect("state cleared").name, "NameError");

        sandbox.remove_code_context(&b).await.unwrap();
        let err = in_b("1").await.unwrap_err();
        assert!(err.is_not_found(), "{err}");
        let err = sandbox.remove_code_context(&b).await.unwrap_err();
        assert!(err.is_not_found(), "{err}");
        let err = sandbox
            .restart_code_context("no-such-context")
            .await
            .unwrap_err();
        assert!(err.is_not_found(), "{err}");
        let ids: Vec<String> = sandbox
            .list_code_contexts()
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.id)
            .collect();
        assert!(!ids.contains(&b.id), "{ids:?}");
        sandbox.kill().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs root and the code-interpreter-v1 template (Debian's archive, PyPI)"]
    async fn env_vars_are_per_run() {
        let sandbox = sandbox().await;
        let execution = sandbox
            .run_code(
                "import os; os.environ.get('RUN_VAR')",
                RunCodeOptions::new().env("RUN_VAR", "only this run"),
            )
            .await
            .unwrap();
        assert_eq!(execution.text(), Some("only this run"));
        let execution = run(&sandbox, "import os; os.environ.get('RUN_VAR')").await;
        assert_eq!(execution.text(), None, "{execution:?}");
        let execution = sandbox
            .run_code(
                "echo \"$RUN_VAR\"",
                RunCodeOptions::new()
                    .language("bash")
                    .env("RUN_VAR", "bash too"),
            )
            .await
            .unwrap();
        assert_eq!(execution.logs.stdout.concat(), "bash too\n");
        sandbox.kill().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs root and the code-interpreter-v1 template (Debian's archive, PyPI)"]
    async fn a_bash_context_keeps_its_shell_state() {
        let sandbox = sandbox().await;
        let context = sandbox
            .create_code_context(CreateCodeContextOptions::new().language("bash").cwd("/tmp"))
            .await
            .unwrap();
        assert_eq!(context.language, "bash");
        let bash =
            |code: &'static str| sandbox.run_code(code, RunCodeOptions::new().context(&context));
        bash("GREETING=hello; cd /etc").await.unwrap();
        let execution = bash("echo \"$GREETING from $(pwd)\"").await.unwrap();
        assert_eq!(execution.logs.stdout.concat(), "hello from /etc\n");
        let execution = sandbox
            .run_code("echo default bash", RunCodeOptions::new().language("bash"))
            .await
            .unwrap();
        assert_eq!(execution.logs.stdout.concat(), "default bash\n");
        sandbox.kill().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs root and the code-interpreter-v1 template (Debian's archive, PyPI)"]
    async fn a_kernel_killed_from_outside_is_a_clear_error() {
        let sandbox = sandbox().await;
        run(&sandbox, "lost = 1").await;
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let mut started_tx = Some(started_tx);
        let running = {
            let sandbox = sandbox.clone();
            tokio::spawn(async move {
                sandbox
                    .run_code(
                        "import os, time\nprint(os.getpid(), flush=True)\ntime.sleep(60)",
                        RunCodeOptions::new().on_stdout(move |m| {
                            if let Some(tx) = started_tx.take() {
                                let _ = tx.send(m.line);
                            }
                        }),
                    )
                    .await
            })
        };
        let pid = tokio::time::timeout(Duration::from_secs(60), started_rx)
            .await
            .expect("the run started")
            .unwrap();
        let kill = format!("kill -9 {}", pid.trim());
        sandbox
            .commands()
            .run(&kill, RunOptions::new().user("root"))
            .await
            .unwrap();
        let execution = tokio::time::timeout(Duration::from_secs(30), running)
            .await
            .expect("the run ended after its kernel died")
            .unwrap()
            .expect("an execution carrying the error");
        let error = execution.error.expect("an error naming the dead kernel");
        assert_eq!(error.name, "ContextRestarting", "{error:?}");
        assert!(error.value.contains("state is lost"), "{error:?}");
        // A new kernel serves the next run, without the old state.
        let execution = run(&sandbox, "lost").await;
        assert_eq!(execution.error.expect("NameError").name, "NameError");
        assert_eq!(run(&sandbox, "1+1").await.text(), Some("2"));
        sandbox.kill().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs root and the code-interpreter-v1 template (Debian's archive, PyPI)"]
    async fn a_sandbox_killed_mid_run_is_a_timeout() {
        let sandbox = sandbox().await;
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let mut started_tx = Some(started_tx);
        let running = {
            let sandbox = sandbox.clone();
            tokio::spawn(async move {
                sandbox
                    .run_code(
                        "import time\nprint('started', flush=True)\ntime.sleep(60)",
                        RunCodeOptions::new().on_stdout(move |_| {
                            if let Some(tx) = started_tx.take() {
                                let _ = tx.send(());
                            }
                        }),
                    )
                    .await
            })
        };
        tokio::time::timeout(Duration::from_secs(60), started_rx)
            .await
            .expect("the run started")
            .unwrap();
        sandbox.kill().await.unwrap();
        let err = tokio::time::timeout(Duration::from_secs(30), running)
            .await
            .expect("the run ended with its sandbox")
            .unwrap()
            .unwrap_err();
        assert!(err.is_timeout(), "{err}");
        assert!(
            err.to_string()
                .starts_with("The sandbox was killed while the request was in progress."),
            "{err}"
        );
    }

    #[test]
    #[ignore = "needs root and the code-interpreter-v1 template (Debian's archive, PyPI)"]
    fn the_blocking_twin_runs_code() {
        let started = Instant::now();
        let sandbox = loop {
            match e2b_code_interpreter::blocking::Sandbox::builder().create() {
                Ok(sandbox) => break sandbox,
                Err(e) if e.http_status() == Some(503) && started.elapsed() < BUILD_WAIT => {
                    std::thread::sleep(Duration::from_secs(5));
                }
                Err(e) => panic!("creating a code-interpreter-v1 sandbox: {e}"),
            }
        };
        let execution = sandbox
            .run_code("print('hi'); 6 * 7", RunCodeOptions::new())
            .unwrap();
        assert_eq!(execution.text(), Some("42"));
        assert_eq!(execution.logs.stdout, ["hi\n"]);
        let context = sandbox
            .create_code_context(CreateCodeContextOptions::new())
            .unwrap();
        sandbox.remove_code_context(&context).unwrap();
        sandbox.kill().unwrap();
    }
}
