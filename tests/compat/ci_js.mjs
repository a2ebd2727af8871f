// E2B's official code-interpreter SDK for JS (npm `@e2b/code-interpreter`) against
// e2b-local's `code-interpreter-v1` sandboxes: the checks of ci_py.py.
//
// Usage: node ci_js.mjs <path to node_modules/@e2b/code-interpreter/dist/index.mjs>
// Run by run.sh, which exports E2B_API_URL, E2B_SANDBOX_URL, E2B_API_KEY and E2B_DOMAIN, after
// the template was built in the host's namespace (the checks run without internet).
// Every check asserts values. Prints `PASS ci-js-<version> <check>` / `FAIL ...` lines and a
// last line `N passed, N failed`; exits 1 if any check failed.
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { inflateSync } from 'node:zlib'

const entry = process.argv[2]
if (!entry) {
  console.error('usage: node ci_js.mjs <node_modules/@e2b/code-interpreter/dist/index.mjs>')
  process.exit(2)
}
const { Sandbox, InvalidArgumentError, NotFoundError, TimeoutError } = await import(pathToFileURL(entry).href)
const VERSION = JSON.parse(readFileSync(join(dirname(entry), '..', 'package.json'), 'utf8')).version
const LABEL = `ci-js-${VERSION}`
const TAG = randomUUID().slice(0, 10)
const CHECKS = []
const check = (name, fn) => CHECKS.push([name, fn])

// [width, height] of a PNG whose IDATs inflate to its rows (8-bit samples).
function pngSize(data) {
  assert.deepEqual([...data.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])
  let pos = 8
  let ihdr
  const idat = []
  while (pos < data.length) {
    const length = data.readUInt32BE(pos)
    const kind = data.subarray(pos + 4, pos + 8).toString('latin1')
    const body = data.subarray(pos + 8, pos + 8 + length)
    if (kind === 'IHDR') ihdr = body
    if (kind === 'IDAT') idat.push(body)
    pos += 12 + length
  }
  const [width, height, depth, color] = [ihdr.readUInt32BE(0), ihdr.readUInt32BE(4), ihdr[8], ihdr[9]]
  assert.equal(depth, 8)
  const channels = { 0: 1, 2: 3, 4: 2, 6: 4 }[color]
  assert.equal(inflateSync(Buffer.concat(idat)).length, height * (1 + width * channels))
  return [width, height]
}

async function rejects(promise, cls, what) {
  try {
    await promise
  } catch (e) {
    assert.ok(e instanceof cls, `${what}: expected ${cls.name}, got ${e?.stack ?? e}`)
    return e
  }
  assert.fail(`${what}: no error`)
}

check('stdout_and_stderr_stream_in_order', async (sbx) => {
  const seen = []
  const ex = await sbx.runCode(
    "import sys, time\nprint('one', flush=True)\ntime.sleep(0.5)\nprint('two', file=sys.stderr, flush=True)\ntime.sleep(0.5)\nprint('three')",
    { onStdout: (m) => seen.push([m.line, m.error]), onStderr: (m) => seen.push([m.line, m.error]) },
  )
  assert.deepEqual(seen, [['one\n', false], ['two\n', true], ['three\n', false]])
  assert.deepEqual(ex.logs, { stdout: ['one\n', 'three\n'], stderr: ['two\n'] })
  assert.equal(ex.error, undefined)
  assert.deepEqual(ex.results, [])
})

check('main_result_state_and_execution_count', async (sbx) => {
  const ex = await sbx.runCode('1+1')
  assert.equal(ex.text, '2')
  assert.equal(ex.results.length, 1)
  assert.equal(ex.results[0].isMainResult, true)
  const first = ex.executionCount
  assert.equal(typeof first, 'number')
  await sbx.runCode('x = 40\nimport math')
  const next = await sbx.runCode('x + 2, math.floor(2.5)')
  assert.equal(next.text, '(42, 2)')
  assert.equal(next.executionCount, first + 2)
})

check('matplotlib_figure_is_a_png', async (sbx) => {
  const ex = await sbx.runCode(
    "import matplotlib.pyplot as plt\nplt.figure(figsize=(4, 3), dpi=100)\nplt.plot([1, 2, 3], [1, 4, 9])\nplt.title('Squares')\nplt.show()",
  )
  assert.equal(ex.error, undefined)
  const figures = ex.results.filter((r) => r.png)
  assert.equal(figures.length, 1)
  const [width, height] = pngSize(Buffer.from(figures[0].png, 'base64'))
  assert.ok(width > 100 && width <= 400 && height > 100 && height <= 300, `${width}x${height}`)
  assert.equal(figures[0].isMainResult, false)
  assert.ok(figures[0].formats().includes('png'))
})

check('matplotlib_figure_has_chart_data', async (sbx) => {
  const ex = await sbx.runCode(
    "import matplotlib.pyplot as plt\nplt.figure()\nplt.bar(['a', 'b'], [3, 5], label='units')\nplt.title('Units')\nplt.show()",
  )
  const charts = ex.results.map((r) => r.chart).filter(Boolean)
  assert.equal(charts.length, 1, JSON.stringify(ex.results.map((r) => r.formats())))
  assert.equal(charts[0].type, 'bar')
  assert.equal(charts[0].title, 'Units')
  assert.deepEqual(
    charts[0].elements.map((e) => [e.label, e.value]),
    [['a', 3], ['b', 5]],
  )
})

check('pandas_dataframe_is_html', async (sbx) => {
  const ex = await sbx.runCode("import pandas as pd\npd.DataFrame({'city': ['Oslo', 'Lima'], 'temp': [3, 19]})")
  assert.equal(ex.results.length, 1)
  const [result] = ex.results
  assert.equal(result.isMainResult, true)
  assert.ok(result.html.includes('<table') && result.html.includes('<td>Oslo</td>'), result.html)
  assert.ok(result.text.includes('Lima'), result.text)
})

check('exception_has_name_value_traceback', async (sbx) => {
  const errors = []
  const ex = await sbx.runCode("def divide(a, b):\n    return a / b\nprint('before')\ndivide(1, 0)", {
    onError: (e) => errors.push(e),
  })
  assert.equal(ex.error.name, 'ZeroDivisionError')
  assert.equal(ex.error.value, 'division by zero')
  assert.ok(ex.error.traceback.includes('divide'), ex.error.traceback)
  assert.deepEqual(errors, [ex.error])
  assert.deepEqual(ex.logs.stdout, ['before\n'])
})

check('timeout_interrupts_and_the_next_run_works', async (sbx) => {
  await sbx.runCode("kept = 'still here'")
  let started = Date.now()
  const e = await rejects(
    sbx.runCode('import time\nfor i in range(600):\n    time.sleep(0.1)', { timeoutMs: 2000 }),
    TimeoutError,
    'a 2 s timeout',
  )
  assert.ok(e.message.includes('Execution timed out'), e.message)
  assert.ok(Date.now() - started < 15_000)
  started = Date.now()
  const ex = await sbx.runCode('kept')
  assert.equal(ex.text, 'still here')
  assert.ok(Date.now() - started < 20_000, `${Date.now() - started} ms`)
})

check('contexts_are_isolated_and_restart_clears_state', async (sbx) => {
  const a = await sbx.createCodeContext()
  const b = await sbx.createCodeContext({ cwd: '/tmp' })
  assert.equal(a.language, 'python')
  assert.equal(a.cwd, '/home/user')
  assert.equal(b.cwd, '/tmp')
  assert.notEqual(a.id, b.id)
  await sbx.runCode("secret = 'a'", { context: a })
  assert.equal((await sbx.runCode('secret', { context: b })).error.name, 'NameError')
  assert.equal((await sbx.runCode('import os; os.getcwd()', { context: b })).text, '/tmp')
  assert.equal((await sbx.runCode('secret')).error.name, 'NameError')
  let ids = (await sbx.listCodeContexts()).map((c) => c.id)
  assert.ok(ids.includes(a.id) && ids.includes(b.id), ids)
  assert.equal((await sbx.runCode('secret', { context: a })).text, 'a')
  await sbx.restartCodeContext(a)
  assert.equal((await sbx.runCode('secret', { context: a })).error.name, 'NameError')
  await sbx.removeCodeContext(b.id)
  ids = (await sbx.listCodeContexts()).map((c) => c.id)
  assert.ok(!ids.includes(b.id), ids)
  await rejects(sbx.runCode('1', { context: b }), NotFoundError, 'a removed context')
  await rejects(sbx.restartCodeContext('no-such-context'), NotFoundError, 'an unknown context')
})

check('env_vars_are_per_run', async (sbx) => {
  let ex = await sbx.runCode("import os; os.environ.get('RUN_VAR')", { envs: { RUN_VAR: 'only this run' } })
  assert.equal(ex.text, 'only this run')
  ex = await sbx.runCode("import os; os.environ.get('RUN_VAR')")
  assert.equal(ex.text, undefined)
  ex = await sbx.runCode('echo "$RUN_VAR"', { language: 'bash', envs: { RUN_VAR: 'bash too' } })
  assert.equal(ex.logs.stdout.join(''), 'bash too\n')
})

check('bash_context_keeps_its_shell_state', async (sbx) => {
  const ctx = await sbx.createCodeContext({ language: 'bash', cwd: '/tmp' })
  assert.equal(ctx.language, 'bash')
  await sbx.runCode('GREETING=hello; cd /etc', { context: ctx })
  const ex = await sbx.runCode('echo "$GREETING from $(pwd)"', { context: ctx })
  assert.equal(ex.logs.stdout.join(''), 'hello from /etc\n')
  await rejects(sbx.runCode('1', { language: 'python', context: ctx }), InvalidArgumentError, 'language and context')
})

check('kernel_killed_from_outside_is_a_clear_error', async (sbx) => {
  await sbx.runCode('lost = 1')
  let started
  const pid = new Promise((resolve) => (started = resolve))
  const running = sbx.runCode('import os, time\nprint(os.getpid(), flush=True)\ntime.sleep(60)', {
    onStdout: (m) => started(m.line.trim()),
  })
  await sbx.commands.run(`kill -9 ${await pid}`, { user: 'root' })
  const ex = await running
  assert.equal(ex.error?.name, 'ContextRestarting', JSON.stringify(ex.error))
  assert.equal((await sbx.runCode('lost')).error.name, 'NameError')
  assert.equal((await sbx.runCode('1+1')).text, '2')
})

let passed = 0
let failed = 0
let sbx
try {
  sbx = await Sandbox.create({ timeoutMs: 300_000, metadata: { compat: TAG } })
} catch (e) {
  console.log(`FAIL ${LABEL} create`)
  console.log(e?.stack ?? String(e))
  console.log('0 passed, 1 failed')
  process.exit(1)
}
for (const [name, fn] of CHECKS) {
  try {
    await fn(sbx)
    passed++
    console.log(`PASS ${LABEL} ${name}`)
  } catch (e) {
    failed++
    console.log(`FAIL ${LABEL} ${name}`)
    console.log(e?.stack ?? String(e))
  }
}
await sbx.kill().catch(() => {})
console.log(`${passed} passed, ${failed} failed`)
process.exit(failed === 0 ? 0 : 1)
