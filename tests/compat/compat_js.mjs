// E2B's official JS SDK (npm `e2b`) against e2b-local, one check per feature row.
//
// Usage: node compat_js.mjs <path to node_modules/e2b/dist/index.mjs>
// Run by run.sh, which exports E2B_API_URL, E2B_SANDBOX_URL, E2B_API_KEY, E2B_DOMAIN and
// E2B_VOLUME_API_URL and
// runs this in the namespace of a `serve --network nat` whose only uplink is run.sh's fake
// internet (fake_internet.py: HTTP on 203.0.113.10 and .11, DNS a.test/b.test -> .10,
// c.test -> .11).
// Every check asserts values (stdout, exit codes, file bytes, ids). Prints
// `PASS js-<version> <check>` / `FAIL ...` lines and a last line `N passed, N failed`;
// exits 1 if any check failed.
import assert from 'node:assert/strict'
import { createHash, randomUUID } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { pathToFileURL } from 'node:url'

const entry = process.argv[2]
if (!entry) {
  console.error('usage: node compat_js.mjs <node_modules/e2b/dist/index.mjs>')
  process.exit(2)
}
const { Sandbox, Template, BuildError, CommandExitError, FileType, FilesystemEventType, SandboxError, SandboxNotFoundError } = await import(
  pathToFileURL(entry).href
)
const VERSION = JSON.parse(readFileSync(join(dirname(entry), '..', 'package.json'), 'utf8')).version
const LABEL = `js-${VERSION}`
const TAG = randomUUID().slice(0, 10)
const CHECKS = []
const check = (name, fn) => CHECKS.push([name, fn])
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

async function newSandbox(opts = {}) {
  const metadata = { compat: TAG, ...(opts.metadata ?? {}) }
  return Sandbox.create({ timeoutMs: 120_000, ...opts, metadata })
}

async function waitUntil(pred, what, ms = 15_000) {
  const deadline = Date.now() + ms
  for (;;) {
    const v = await pred()
    if (v) return v
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(50)
  }
}

async function withSandbox(opts, fn) {
  const sbx = await newSandbox(opts)
  try {
    return await fn(sbx)
  } finally {
    await Sandbox.kill(sbx.sandboxId).catch(() => {})
  }
}

const lifetime = (info) => (info.endAt.getTime() - info.startedAt.getTime()) / 1000

// --- sandbox lifecycle -------------------------------------------------------------------

check('sandbox_create', () =>
  withSandbox({ envs: { COMPAT_VAR: 'v a l' }, metadata: { k: 'v' } }, async (sbx) => {
    assert.ok(typeof sbx.sandboxId === 'string' && sbx.sandboxId.length > 0)
    const r = await sbx.commands.run('echo $COMPAT_VAR')
    assert.equal(r.stdout, 'v a l\n')
    assert.equal(r.exitCode, 0)
    const info = await sbx.getInfo()
    assert.equal(info.sandboxId, sbx.sandboxId)
    assert.equal(info.templateId, 'base')
    assert.deepEqual(info.metadata, { k: 'v', compat: TAG })
  })
)

check('sandbox_connect', () =>
  withSandbox({}, async (sbx) => {
    await sbx.files.write('/tmp/connect.txt', 'via first handle')
    const other = await Sandbox.connect(sbx.sandboxId)
    assert.equal(other.sandboxId, sbx.sandboxId)
    assert.equal(await other.files.read('/tmp/connect.txt'), 'via first handle')
    const same = await sbx.connect()
    assert.equal(same.sandboxId, sbx.sandboxId)
    assert.equal((await same.commands.run('echo ok')).stdout, 'ok\n')
  })
)

check('sandbox_list_filters_and_pages', async () => {
  const tag = randomUUID().slice(0, 8)
  const made = []
  try {
    for (let i = 0; i < 3; i++) made.push(await newSandbox({ metadata: { list: tag, n: String(i) } }))
    const ids = made.map((s) => s.sandboxId).sort()
    const pager = Sandbox.list({ query: { metadata: { list: tag } }, limit: 2 })
    const first = await pager.nextItems()
    assert.equal(first.length, 2)
    assert.equal(pager.hasNext, true)
    assert.ok(pager.nextToken)
    const second = await pager.nextItems()
    assert.equal(second.length, 1)
    assert.equal(pager.hasNext, false)
    assert.deepEqual([...first, ...second].map((s) => s.sandboxId).sort(), ids)
    const only = await Sandbox.list({ query: { metadata: { list: tag, n: '1' } } }).nextItems()
    assert.deepEqual(only.map((s) => s.sandboxId), [made[1].sandboxId])
    assert.deepEqual(only[0].metadata, { list: tag, n: '1', compat: TAG })
    assert.equal(await made[2].pause(), true)
    const running = await Sandbox.list({ query: { metadata: { list: tag }, state: ['running'] } }).nextItems()
    assert.deepEqual(running.map((s) => s.sandboxId).sort(), [made[0].sandboxId, made[1].sandboxId].sort())
    const paused = await Sandbox.list({ query: { metadata: { list: tag }, state: ['paused'] } }).nextItems()
    assert.deepEqual(paused.map((s) => s.sandboxId), [made[2].sandboxId])
    assert.equal(paused[0].state, 'paused')
  } finally {
    for (const s of made) await Sandbox.kill(s.sandboxId).catch(() => {})
  }
  assert.deepEqual(await Sandbox.list({ query: { metadata: { list: tag } } }).nextItems(), [])
})

check('sandbox_kill', async () => {
  const sbx = await newSandbox()
  assert.equal(await sbx.kill(), true)
  assert.equal(await sbx.isRunning(), false)
  assert.equal(await Sandbox.kill(sbx.sandboxId), false) // 404 -> false
})

check('sandbox_set_timeout_and_get_info', () =>
  withSandbox({ timeoutMs: 60_000 }, async (sbx) => {
    let left = lifetime(await sbx.getInfo())
    assert.ok(left >= 55 && left <= 65, `lifetime ${left}`)
    await sbx.setTimeout(200_000)
    left = lifetime(await sbx.getInfo())
    assert.ok(left >= 195 && left <= 205, `lifetime ${left}`)
    await Sandbox.setTimeout(sbx.sandboxId, 100_000)
    const info = await Sandbox.getInfo(sbx.sandboxId)
    left = lifetime(info)
    assert.ok(left >= 95 && left <= 105, `lifetime ${left}`)
    assert.equal(info.state, 'running')
  })
)

check('sandbox_lifecycle_auto_resume', () =>
  withSandbox({ lifecycle: { onTimeout: 'pause', autoResume: true } }, async (sbx) => {
    const info = await Sandbox.getInfo(sbx.sandboxId)
    assert.deepEqual(info.lifecycle, { onTimeout: 'pause', autoResume: true })
    await sbx.files.write('/home/user/a.txt', 'woken')
    assert.equal(await sbx.pause(), true)
    assert.equal((await Sandbox.getInfo(sbx.sandboxId)).state, 'paused')
    // The next envd call resumes it and is served.
    assert.equal((await sbx.commands.run('cat /home/user/a.txt')).stdout, 'woken')
    assert.equal((await Sandbox.getInfo(sbx.sandboxId)).state, 'running')
  }))

check('sandbox_pause_filesystem_only_is_a_new_boot', () =>
  withSandbox({}, async (sbx) => {
    const bootId = '/proc/sys/kernel/random/boot_id'
    const first = await sbx.files.read(bootId)
    await sbx.files.write('/home/user/f.txt', 'files kept')
    await sbx.commands.run('sleep 1000', { background: true })
    assert.equal(await sbx.pause({ keepMemory: false }), true)
    assert.equal((await Sandbox.getInfo(sbx.sandboxId)).state, 'paused')
    const resumed = await Sandbox.connect(sbx.sandboxId)
    assert.notEqual(await resumed.files.read(bootId), first)
    assert.equal(await resumed.files.read('/home/user/f.txt'), 'files kept')
    assert.equal((await resumed.commands.run('pgrep -x sleep || echo none')).stdout, 'none\n')
  }))

check('sandbox_pause_resume_is_running', () =>
  withSandbox({}, async (sbx) => {
    await sbx.files.write('/home/user/keep.txt', 'kept across pause')
    assert.equal(await sbx.isRunning(), true)
    assert.equal(await sbx.pause(), true)
    assert.equal(await sbx.isRunning(), false)
    assert.equal((await Sandbox.getInfo(sbx.sandboxId)).state, 'paused')
    const resumed = await Sandbox.connect(sbx.sandboxId)
    assert.equal(await resumed.isRunning(), true)
    assert.equal(await resumed.files.read('/home/user/keep.txt'), 'kept across pause')
    assert.equal((await resumed.commands.run('echo back')).stdout, 'back\n')
    assert.equal((await Sandbox.getInfo(sbx.sandboxId)).state, 'running')
  })
)

check('sandbox_get_host', () =>
  withSandbox({}, async (sbx) => {
    await sbx.commands.run('mkdir -p /tmp/www && echo port-ok > /tmp/www/index.html')
    await sbx.commands.run('cd /tmp/www && exec python3 -m http.server 8124 --bind 127.0.0.1', {
      background: true,
    })
    const host = sbx.getHost(8124)
    assert.equal(host, `8124-${sbx.sandboxId}.${process.env.E2B_DOMAIN}`)
    // Node's fetch forbids overriding Host; use http.request to route by Host on the server.
    const http = await import('node:http')
    const url = new URL(process.env.E2B_SANDBOX_URL)
    const get = () =>
      new Promise((resolve, reject) => {
        const req = http.request(
          { host: url.hostname, port: url.port, path: '/index.html', headers: { Host: host } },
          (res) => {
            const chunks = []
            res.on('data', (c) => chunks.push(c))
            res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString() }))
          }
        )
        req.on('error', reject)
        req.setTimeout(5000, () => req.destroy(new Error('request timed out')))
        req.end()
      })
    const res = await waitUntil(async () => {
      const r = await get()
      if (r.status === 502) return null
      return r
    }, 'port 8124 to open')
    assert.equal(res.status, 200)
    assert.equal(res.body, 'port-ok\n')
  })
)

check('sandbox_upload_url_download_url', () =>
  withSandbox({}, async (sbx) => {
    await sbx.files.write('/home/user/signed.txt', 'signed content')
    const url = await sbx.downloadUrl('/home/user/signed.txt')
    assert.ok(url.includes('signature='), url)
    let res = await fetch(url)
    assert.equal(res.status, 200)
    assert.equal(await res.text(), 'signed content')
    const up = await sbx.uploadUrl('/home/user/up.txt')
    const form = new FormData()
    form.append('file', new Blob(['uploaded!']), 'up.txt')
    res = await fetch(up, { method: 'POST', body: form })
    assert.equal(res.status, 200)
    assert.equal(await sbx.files.read('/home/user/up.txt'), 'uploaded!')
    res = await fetch(url.replace('signature=', 'signature=x'))
    assert.ok(res.status === 401 || res.status === 502, `tampered signature got ${res.status}`)
  })
)

check('sandbox_get_metrics', () =>
  withSandbox({}, async (sbx) => {
    await sbx.commands.run('true')
    const samples = await waitUntil(async () => {
      const m = await sbx.getMetrics()
      return m.length > 0 ? m : null
    }, 'a metrics sample')
    for (const m of samples) {
      assert.ok(m.cpuCount >= 1 && m.memTotal > 0 && m.memUsed > 0 && m.memUsed <= m.memTotal, JSON.stringify(m))
      assert.ok(m.diskTotal > 0, JSON.stringify(m))
    }
  })
)

check('git_via_commands', () =>
  withSandbox({}, async (sbx) => {
    const repo = '/home/user/repo'
    await sbx.git.init(repo, { initialBranch: 'main' })
    await sbx.files.write(`${repo}/README`, 'hello git\n')
    const st = await sbx.git.status(repo)
    assert.equal(st.currentBranch, 'main')
    assert.deepEqual(st.fileStatus.map((f) => [f.name, f.status]), [['README', 'untracked']])
    await sbx.git.add(repo)
    await sbx.git.commit(repo, 'first commit', { authorName: 'Compat', authorEmail: 'compat@example.com' })
    const r = await sbx.commands.run(`git -C ${repo} log --format='%s|%an'`)
    assert.equal(r.stdout, 'first commit|Compat\n')
    assert.equal((await sbx.git.status(repo)).isClean, true)
  })
)

// --- commands ----------------------------------------------------------------------------

check('commands_run_foreground', () =>
  withSandbox({}, async (sbx) => {
    const out = []
    const err = []
    const r = await sbx.commands.run('echo out; echo err >&2; pwd; echo $X', {
      cwd: '/tmp',
      envs: { X: 'from-envs' },
      onStdout: (d) => out.push(d),
      onStderr: (d) => err.push(d),
    })
    assert.equal(r.exitCode, 0)
    assert.equal(r.stdout, 'out\n/tmp\nfrom-envs\n')
    assert.equal(r.stderr, 'err\n')
    assert.equal(out.join(''), r.stdout)
    assert.equal(err.join(''), r.stderr)
    assert.equal((await sbx.commands.run('whoami', { user: 'root' })).stdout, 'root\n')
    await assert.rejects(sbx.commands.run('echo bad >&2; exit 7'), (e) => {
      assert.ok(e instanceof CommandExitError, String(e))
      assert.equal(e.exitCode, 7)
      assert.equal(e.stderr, 'bad\n')
      return true
    })
  })
)

check('commands_run_background_and_connect', () =>
  withSandbox({}, async (sbx) => {
    const h = await sbx.commands.run('sleep 0.3; echo first; sleep 0.3; echo second', { background: true })
    assert.ok(Number.isInteger(h.pid) && h.pid > 0)
    const other = await sbx.commands.connect(h.pid)
    assert.equal(other.pid, h.pid)
    const r = await other.wait()
    assert.equal(r.exitCode, 0)
    assert.ok(r.stdout.includes('second\n'), r.stdout)
    assert.equal((await h.wait()).stdout, 'first\nsecond\n')
  })
)

check('commands_list_and_kill', () =>
  withSandbox({}, async (sbx) => {
    const h = await sbx.commands.run('sleep 300', { background: true, envs: { MARK: 'yes' }, cwd: '/tmp' })
    const p = (await sbx.commands.list()).find((q) => q.pid === h.pid)
    assert.ok(p, 'background command not listed')
    assert.equal(p.cmd, '/bin/bash')
    assert.ok(p.args.join(' ').includes('sleep 300'), p.args)
    assert.equal(p.cwd, '/tmp')
    assert.equal(p.envs.MARK, 'yes')
    assert.equal(await sbx.commands.kill(h.pid), true)
    await assert.rejects(h.wait(), (e) => {
      assert.ok(e instanceof CommandExitError, String(e))
      assert.notEqual(e.exitCode, 0)
      return true
    })
    assert.ok(!(await sbx.commands.list()).some((q) => q.pid === h.pid))
    assert.equal(await sbx.commands.kill(h.pid), false)
  })
)

check('commands_send_stdin_close_stdin', () =>
  withSandbox({}, async (sbx) => {
    const h = await sbx.commands.run('cat', { background: true, stdin: true })
    await sbx.commands.sendStdin(h.pid, 'hello ')
    await sbx.commands.sendStdin(h.pid, new TextEncoder().encode('stdin\n'))
    await sbx.commands.closeStdin(h.pid)
    const r = await h.wait()
    assert.equal(r.exitCode, 0)
    assert.equal(r.stdout, 'hello stdin\n')
  })
)

// --- pty ---------------------------------------------------------------------------------

check('pty_create_connect_send_resize_kill', () =>
  withSandbox({}, async (sbx) => {
    let buf = ''
    const dec = new TextDecoder()
    const h = await sbx.pty.create({ cols: 80, rows: 24, onData: (d) => (buf += dec.decode(d, { stream: true })) })
    const enc = new TextEncoder()
    await sbx.pty.sendInput(h.pid, enc.encode('stty size; echo mark-$((40+2))\n'))
    await waitUntil(() => buf.includes('mark-42'), 'first pty output')
    assert.ok(buf.includes('24 80'), buf)
    await sbx.pty.resize(h.pid, { cols: 100, rows: 30 })
    await sbx.pty.sendInput(h.pid, enc.encode('stty size; echo mark-$((40+3))\n'))
    await waitUntil(() => buf.includes('mark-43'), 'pty output after resize')
    assert.ok(buf.includes('30 100'), buf)
    // A second client attaches to the same terminal and sees its output.
    let buf2 = ''
    const h2 = await sbx.pty.connect(h.pid, { onData: (d) => (buf2 += new TextDecoder().decode(d)) })
    assert.equal(h2.pid, h.pid)
    await sbx.pty.sendInput(h.pid, enc.encode('echo mark-$((40+4))\n'))
    await waitUntil(() => buf2.includes('mark-44'), 'output on the connected pty handle')
    assert.equal(await sbx.pty.kill(h.pid), true)
    const ended = await Promise.race([
      h.wait().then(
        () => 'exited',
        () => 'exited'
      ),
      sleep(10_000).then(() => 'hung'),
    ])
    assert.equal(ended, 'exited')
    assert.ok(!(await sbx.commands.list()).some((q) => q.pid === h.pid))
  })
)

// --- files -------------------------------------------------------------------------------

check('files_read_write', () =>
  withSandbox({}, async (sbx) => {
    const info = await sbx.files.write('/home/user/d/a.txt', 'alpha\n')
    assert.equal(info.path, '/home/user/d/a.txt')
    assert.equal(info.name, 'a.txt')
    assert.equal(await sbx.files.read('/home/user/d/a.txt'), 'alpha\n')
    const data = new Uint8Array(256 * 257).map((_, i) => i % 256)
    await sbx.files.write('/home/user/d/b.bin', data.buffer)
    const back = await sbx.files.read('/home/user/d/b.bin', { format: 'bytes' })
    assert.ok(Buffer.from(back).equals(Buffer.from(data)), 'binary round trip differs')
    const md5 = createHash('md5').update(data).digest('hex')
    const r = await sbx.commands.run('md5sum < /home/user/d/b.bin; stat -c %s:%U /home/user/d/b.bin')
    assert.equal(r.stdout, `${md5}  -\n${data.length}:user\n`)
    await sbx.files.write('/home/user/d/a.txt', 'overwritten')
    assert.equal(await sbx.files.read('/home/user/d/a.txt'), 'overwritten')
  })
)

check('files_write_files', () =>
  withSandbox({}, async (sbx) => {
    const entries = [0, 1, 2, 3, 4].map((i) => ({ path: `/home/user/many/f${i}.txt`, data: `content ${i}` }))
    entries.push({ path: '/home/user/many/sub/bin', data: new Uint8Array([0, 1, 255]).buffer })
    const infos = await sbx.files.writeFiles(entries)
    assert.deepEqual(infos.map((i) => i.path).sort(), entries.map((e) => e.path).sort())
    for (let i = 0; i < 5; i++) assert.equal(await sbx.files.read(`/home/user/many/f${i}.txt`), `content ${i}`)
    const bin = await sbx.files.read('/home/user/many/sub/bin', { format: 'bytes' })
    assert.deepEqual([...bin], [0, 1, 255])
  })
)

check('files_list_exists_get_info', () =>
  withSandbox({}, async (sbx) => {
    await sbx.files.write('/home/user/ls/one.txt', '12345')
    await sbx.files.write('/home/user/ls/sub/two.txt', 'x')
    const top = (await sbx.files.list('/home/user/ls')).map((e) => [e.name, e.type]).sort()
    assert.deepEqual(top, [
      ['one.txt', FileType.FILE],
      ['sub', FileType.DIR],
    ])
    const deep = (await sbx.files.list('/home/user/ls', { depth: 2 })).map((e) => e.path).sort()
    assert.deepEqual(deep, ['/home/user/ls/one.txt', '/home/user/ls/sub', '/home/user/ls/sub/two.txt'])
    assert.equal(await sbx.files.exists('/home/user/ls/one.txt'), true)
    assert.equal(await sbx.files.exists('/home/user/ls/none'), false)
    const info = await sbx.files.getInfo('/home/user/ls/one.txt')
    assert.equal(info.name, 'one.txt')
    assert.equal(info.type, FileType.FILE)
    assert.equal(info.size, 5)
    assert.equal(info.path, '/home/user/ls/one.txt')
    assert.equal(info.owner, 'user')
    assert.equal((await sbx.files.getInfo('/home/user/ls/sub')).type, FileType.DIR)
  })
)

check('files_remove_rename_make_dir', () =>
  withSandbox({}, async (sbx) => {
    assert.equal(await sbx.files.makeDir('/home/user/md/a/b'), true)
    assert.equal(await sbx.files.makeDir('/home/user/md/a/b'), false)
    assert.equal((await sbx.files.getInfo('/home/user/md/a/b')).type, FileType.DIR)
    await sbx.files.write('/home/user/md/a/b/f.txt', 'moving')
    const moved = await sbx.files.rename('/home/user/md/a/b/f.txt', '/home/user/md/g.txt')
    assert.equal(moved.path, '/home/user/md/g.txt')
    assert.equal(moved.name, 'g.txt')
    assert.equal(await sbx.files.exists('/home/user/md/a/b/f.txt'), false)
    assert.equal(await sbx.files.read('/home/user/md/g.txt'), 'moving')
    await sbx.files.remove('/home/user/md/g.txt')
    assert.equal(await sbx.files.exists('/home/user/md/g.txt'), false)
    await sbx.files.remove('/home/user/md/a')
    assert.equal(await sbx.files.exists('/home/user/md/a'), false)
    assert.deepEqual(await sbx.files.list('/home/user/md'), [])
  })
)

check('files_watch_dir_streaming', () =>
  withSandbox({}, async (sbx) => {
    await sbx.files.makeDir('/home/user/aw')
    const events = []
    const handle = await sbx.files.watchDir('/home/user/aw', (e) => events.push(e), { recursive: true })
    await sbx.files.write('/home/user/aw/x.txt', 'data')
    await sbx.files.rename('/home/user/aw/x.txt', '/home/user/aw/y.txt')
    await sbx.commands.run('rm /home/user/aw/y.txt')
    await waitUntil(
      () => events.some((e) => e.name === 'y.txt' && e.type === FilesystemEventType.REMOVE),
      'a remove event for y.txt'
    )
    assert.ok(
      events.some(
        (e) => e.name === 'x.txt' && (e.type === FilesystemEventType.CREATE || e.type === FilesystemEventType.WRITE)
      ),
      JSON.stringify(events)
    )
    await handle.stop()
  })
)

// --- networking (against run.sh's fake internet) -----------------------------------------

const SERVER_A = '203.0.113.10' // HTTP; a.test and b.test
const SERVER_B = '203.0.113.11' // HTTP; c.test

// getInfo().network as this SDK builds it: every key present, the unset ones undefined.
const netInfo = (fields) => ({
  allowOut: undefined,
  denyOut: undefined,
  rules: undefined,
  egressProxy: undefined,
  allowPublicTraffic: undefined,
  maskRequestHost: undefined,
  httpsPorts: undefined,
  ...fields,
})

// [exit code, stdout, stderr] of `cmd` in the sandbox.
async function sh(sbx, cmd, user) {
  try {
    const r = await sbx.commands.run(cmd, { timeoutMs: 30_000, ...(user ? { user } : {}) })
    return [r.exitCode, r.stdout, r.stderr]
  } catch (e) {
    if (!(e instanceof CommandExitError)) throw e
    return [e.exitCode, e.stdout, e.stderr]
  }
}

// What the fake internet's HTTP server saw of a GET of url from the sandbox.
async function fetchJson(sbx, url, curlArgs = '', user) {
  const [code, out, err] = await sh(sbx, `curl -sS --max-time 5 ${curlArgs} ${url}`, user)
  assert.deepEqual([code, err], [0, ''], `${url}: ${out}`)
  return JSON.parse(out)
}

async function assertReaches(sbx, url, server, host, user) {
  const seen = await fetchJson(sbx, url, '', user)
  assert.deepEqual([seen.server, seen.host, seen.path], [server, host, '/'], `${url}: ${JSON.stringify(seen)}`)
}

// A connection to url (http://HOST/) is refused at once (curl exit 7), not left to time out.
async function assertRefused(sbx, url, user) {
  const host = url.split('/')[2]
  const [code, out, err] = await sh(sbx, `curl -sS --max-time 5 ${url}`, user)
  assert.deepEqual([code, out], [7, ''], `${url}: ${err}`)
  assert.ok(err.startsWith(`curl: (7) Failed to connect to ${host} port 80 after `), `${url}: ${err}`)
}

// The egress proxy answers 403 with its reason; the fake internet's server never answers.
async function assertProxyDenies(sbx, url, name, addr) {
  const [code, out, err] = await sh(sbx, `curl -sS --max-time 5 -w '\\n%{http_code}' ${url}`)
  assert.deepEqual([code, err], [0, ''], `${url}: ${out}`)
  const nl = out.lastIndexOf('\n')
  assert.equal(out.slice(nl + 1), '403', `${url}: ${out}`)
  assert.ok(out.slice(0, nl).startsWith(`e2b-local egress proxy: access to ${name} (${addr}) is denied`), out)
}

check('network_allow_internet_access_false', () =>
  withSandbox({ allowInternetAccess: false }, async (sbx) => {
    for (const user of [undefined, 'root']) await assertRefused(sbx, `http://${SERVER_A}/`, user)
    // Names still resolve (the gateway's resolver), the connection is refused.
    assert.deepEqual(await sh(sbx, 'getent hosts a.test'), [0, `${SERVER_A.padEnd(15)} a.test\n`, ''])
    await assertRefused(sbx, 'http://a.test/')
    const info = await sbx.getInfo()
    assert.equal(info.allowInternetAccess, false)
    assert.equal(info.network, undefined)
    assert.equal((await Sandbox.getInfo(sbx.sandboxId)).allowInternetAccess, false)
    // The sandbox next to it is not affected.
    await withSandbox({}, (other) => assertReaches(other, `http://${SERVER_A}/`, SERVER_A, SERVER_A))
  })
)

check('network_default_reaches_the_internet_by_address_and_name', () =>
  withSandbox({}, async (sbx) => {
    assert.deepEqual(await sh(sbx, 'cat /etc/resolv.conf'), [0, 'nameserver 10.219.0.1\n', ''])
    for (const user of [undefined, 'root']) {
      await assertReaches(sbx, `http://${SERVER_A}/`, SERVER_A, SERVER_A, user)
      await assertReaches(sbx, 'http://a.test/', SERVER_A, 'a.test', user)
    }
    await assertReaches(sbx, 'http://c.test/', SERVER_B, 'c.test')
    const [code, , err] = await sh(sbx, 'curl -sS --max-time 5 http://nope.test/')
    assert.equal(code, 6, err)
    assert.ok(err.includes('Could not resolve host: nope.test'), err)
    const info = await sbx.getInfo()
    assert.equal(info.allowInternetAccess, undefined) // not sent by this SDK, not reported
    assert.equal(info.network, undefined)
  })
)

check('network_deny_out_address', () =>
  withSandbox({ network: { denyOut: [SERVER_A] } }, async (sbx) => {
    await assertRefused(sbx, `http://${SERVER_A}/`)
    await assertRefused(sbx, 'http://a.test/')
    await assertReaches(sbx, `http://${SERVER_B}/`, SERVER_B, SERVER_B)
    await assertReaches(sbx, 'http://c.test/', SERVER_B, 'c.test')
    assert.deepEqual((await sbx.getInfo()).network, netInfo({ denyOut: [SERVER_A] }))
  })
)

check('network_allow_out_domain_beats_deny_all', () =>
  withSandbox({ network: { allowOut: ['a.test'], denyOut: ['0.0.0.0/0'] } }, async (sbx) => {
    await assertReaches(sbx, 'http://a.test/', SERVER_A, 'a.test')
    // b.test has a.test's address but is not an allowed name: the proxy refuses it.
    await assertProxyDenies(sbx, 'http://b.test/', 'b.test', SERVER_A)
    // Neither a name nor an address allowOut holds.
    await assertProxyDenies(sbx, `http://${SERVER_B}/`, SERVER_B, SERVER_B)
    await assertProxyDenies(sbx, 'http://c.test/', 'c.test', SERVER_B)
    assert.deepEqual((await sbx.getInfo()).network, netInfo({ allowOut: ['a.test'], denyOut: ['0.0.0.0/0'] }))
  })
)

check('network_update_network', () =>
  withSandbox({}, async (sbx) => {
    const url = `http://${SERVER_A}/`
    await assertReaches(sbx, url, SERVER_A, SERVER_A)
    assert.equal(await sbx.updateNetwork({ denyOut: ['0.0.0.0/0'] }), undefined)
    await assertRefused(sbx, url)
    assert.deepEqual((await sbx.getInfo()).network, netInfo({ denyOut: ['0.0.0.0/0'] }))
    // By id; an empty update clears every rule.
    assert.equal(await Sandbox.updateNetwork(sbx.sandboxId, {}), undefined)
    await assertReaches(sbx, url, SERVER_A, SERVER_A)
    assert.deepEqual((await sbx.getInfo()).network, netInfo({}))
    // Replace-all: a domain allowed over a deny-all, then allowInternetAccess: false.
    await Sandbox.updateNetwork(sbx.sandboxId, { allowOut: ['c.test'], denyOut: ['0.0.0.0/0'] })
    await assertReaches(sbx, 'http://c.test/', SERVER_B, 'c.test')
    await assertProxyDenies(sbx, 'http://a.test/', 'a.test', SERVER_A)
    const info = await Sandbox.getInfo(sbx.sandboxId)
    assert.deepEqual(info.network, netInfo({ allowOut: ['c.test'], denyOut: ['0.0.0.0/0'] }))
    await sbx.updateNetwork({ allowInternetAccess: false })
    await assertRefused(sbx, 'http://c.test/')
    const after = await sbx.getInfo()
    assert.equal(after.allowInternetAccess, false)
    assert.deepEqual(after.network, netInfo({}))
    // A missing sandbox.
    await assert.rejects(Sandbox.updateNetwork('inope', {}), (e) => {
      assert.equal(e.constructor, SandboxNotFoundError)
      assert.equal(e.message, 'Sandbox inope not found')
      return true
    })
  })
)

// Keeps one HTTP/1.1 connection to 203.0.113.10 open, a GET on it every 0.1 s; logs each
// status to /tmp/live.log, and `cut <error>` when the connection breaks (3 s without an
// answer included). Never reconnects.
const LIVE_PY = `
import http.client, sys, time
c = http.client.HTTPConnection("203.0.113.10", 80, timeout=3)
log = open("/tmp/live.log", "a", buffering=1)
for i in range(150):
    try:
        c.request("GET", "/live%d" % i)
        r = c.getresponse()
        r.read()
        log.write("%d\\n" % r.status)
    except Exception as e:
        log.write("cut %s\\n" % type(e).__name__)
        sys.exit(0)
    time.sleep(0.1)
log.write("never-cut\\n")
`

check('network_update_network_cuts_a_live_connection', () =>
  withSandbox({}, async (sbx) => {
    await sbx.files.write('/tmp/live.py', LIVE_PY)
    const h = await sbx.commands.run('exec python3 /tmp/live.py', { background: true })
    const log = async () => ((await sbx.files.exists('/tmp/live.log')) ? await sbx.files.read('/tmp/live.log') : '')
    await waitUntil(async () => (await log()).split('200\n').length > 3, 'three answers on the live connection')
    await sbx.updateNetwork({ denyOut: ['0.0.0.0/0'] })
    assert.equal((await h.wait()).exitCode, 0)
    const lines = (await log()).trimEnd().split('\n')
    assert.ok(lines.length >= 4 && lines.slice(0, -1).every((l) => l === '200'), lines.join('|'))
    assert.ok(lines.at(-1).startsWith('cut '), lines.join('|'))
  })
)

check('network_invalid_entries_are_400s_naming_them', async () => {
  const tag = randomUUID().slice(0, 8)
  const cases = [
    [{ denyOut: ['example.com'] }, 'network: denyOut entry "example.com" '],
    [{ allowOut: ['300.1.1.1'] }, 'network: allowOut entry "300.1.1.1" '],
  ]
  // The SDK maps a 400 to SandboxError itself ("<status>: <message>", statusCode 400).
  const is400 = (prefix) => (e) => {
    assert.equal(e.constructor, SandboxError, String(e))
    assert.ok(e.message.startsWith(`400: ${prefix}`), e.message)
    assert.equal(e.statusCode, 400)
    return true
  }
  for (const [network, prefix] of cases) {
    await assert.rejects(newSandbox({ network, metadata: { invalid: tag } }), is400(prefix))
  }
  assert.deepEqual(await Sandbox.list({ query: { metadata: { invalid: tag } } }).nextItems(), [])
  await withSandbox({}, async (sbx) => {
    for (const [network, prefix] of cases) await assert.rejects(sbx.updateNetwork(network), is400(prefix))
    // The refused updates changed nothing.
    await assertReaches(sbx, `http://${SERVER_A}/`, SERVER_A, SERVER_A)
    assert.equal((await sbx.getInfo()).network, undefined)
  })
})

check('network_header_rule_reaches_the_server_not_the_sandbox', async () => {
  const token = `tok-${randomUUID().replaceAll('-', '')}`
  const rules = { 'a.test': [{ transform: { headers: { 'X-Secret': 's3', 'X-Compat-Token': token } } }] }
  await withSandbox({ network: { allowOut: ['a.test'], denyOut: ['0.0.0.0/0'], rules } }, async (sbx) => {
    for (const user of [undefined, 'root']) {
      const seen = await fetchJson(sbx, 'http://a.test/', "-H 'X-Secret: mine'", user)
      assert.deepEqual([seen.host, seen.server], ['a.test', SERVER_A])
      assert.equal(seen.headers['x-secret'], 's3')
      assert.equal(seen.headers['x-compat-token'], token)
    }
    // Nothing of the rule inside the sandbox: environment, any process's environment or
    // command line, files. The script names what it looks for in two quoted halves, so its
    // own command line (which it reads too) holds neither the token nor the name.
    const half = token.length >> 1
    const [code, out, err] = await sh(
      sbx,
      "env; for f in /proc/[0-9]*/environ /proc/[0-9]*/cmdline; do tr '\\0' '\\n' < $f; echo; done 2>/dev/null; " +
        `grep -rsIil -e 'x-sec''ret' -e '${token.slice(0, half)}''${token.slice(half)}' /etc /home /tmp /run /root /opt ` +
        "| sed 's/^/MAT''CH:/'",
      'root'
    )
    assert.equal(code, 0, err)
    assert.ok(out.includes('HOME=/'), out.slice(0, 500)) // the listing did run
    assert.ok(!out.includes(token) && !out.toLowerCase().includes('x-secret') && !out.includes('MATCH:'), out)
    assert.ok(!out.split('\n').some((line) => line.split('=').pop() === 's3'), out)
    assert.deepEqual(
      (await sbx.getInfo()).network,
      netInfo({ allowOut: ['a.test'], denyOut: ['0.0.0.0/0'], rules })
    )
  })
})

// --- fork and snapshots ------------------------------------------------------------------

check('fork_sees_the_files_diverges_and_leaves_the_source', () =>
  withSandbox({ timeoutMs: 300_000 }, async (sbx) => {
    await sbx.files.write('/home/user/state.txt', 'prepared')
    const before = await sbx.getInfo()
    const forks = await sbx.fork({ count: 2, timeoutMs: 120_000 })
    assert.equal(forks.length, 2)
    try {
      for (const [i, fork] of forks.entries()) {
        assert.ok(fork instanceof Sandbox, String(fork))
        assert.notEqual(fork.sandboxId, sbx.sandboxId)
        assert.equal(await fork.files.read('/home/user/state.txt'), 'prepared')
        await fork.files.write('/home/user/state.txt', `fork ${i}`)
      }
      assert.equal((await forks[0].commands.run('cat /home/user/state.txt')).stdout, 'fork 0')
      assert.equal(await forks[1].files.read('/home/user/state.txt'), 'fork 1')
      assert.equal(await sbx.files.read('/home/user/state.txt'), 'prepared')
      const after = await sbx.getInfo()
      assert.equal(after.sandboxId, before.sandboxId)
      assert.equal(after.endAt.getTime(), before.endAt.getTime())
      assert.equal(after.state, 'running')
    } finally {
      for (const fork of forks) if (fork instanceof Sandbox) await fork.kill()
    }
    await assert.rejects(sbx.fork({ count: 0 }), /count must be/)
    await sbx.kill()
    await assert.rejects(Sandbox.fork(sbx.sandboxId), SandboxNotFoundError)
  })
)

check('snapshot_create_start_list_delete', () =>
  withSandbox({}, async (sbx) => {
    const name = `compat-snap-${LABEL}-${TAG}`.replaceAll('.', '-')
    await sbx.files.write('/home/user/snap.txt', 'snapped')
    const info = await sbx.createSnapshot({ name })
    assert.deepEqual(info, { snapshotId: `${name}:default`, names: [`${name}:default`] })
    await withSandbox({ template: info.snapshotId }, async (copy) =>
      assert.equal(await copy.files.read('/home/user/snap.txt'), 'snapped')
    )
    const mine = await sbx.listSnapshots().nextItems()
    assert.deepEqual(mine.map((s) => s.snapshotId), [info.snapshotId])
    const named = await Sandbox.listSnapshots({ name }).nextItems()
    assert.deepEqual(named.map((s) => s.snapshotId), [info.snapshotId])
    assert.equal(await Sandbox.deleteSnapshot(info.snapshotId), true)
    assert.equal(await Sandbox.deleteSnapshot(info.snapshotId), false)
    assert.deepEqual(await sbx.listSnapshots().nextItems(), [])
  })
)

// --- templates -----------------------------------------------------------------------

check('template_build_copy_env_run_start_ready', async () => {
  const { mkdtempSync, writeFileSync } = await import('node:fs')
  const { tmpdir } = await import('node:os')
  const ctx = mkdtempSync(join(tmpdir(), 'compat-'))
  writeFileSync(join(ctx, 'hello.txt'), 'hello from the context\n')
  const name = `compat-${LABEL}-${TAG}`.replaceAll('_', '-')
  const template = Template({ fileContextPath: ctx })
    .fromTemplate('base')
    .copy('hello.txt', '/home/user/hello.txt')
    .setEnvs({ COMPAT: 'yes' })
    // TAG makes the step this run's own: other SDK runs on this server share the cache.
    .runCmd(`echo built-by-$(whoami) > /home/user/built.txt && echo step-output # ${TAG}`)
    .setStartCmd('echo started > /tmp/started; sleep infinity', 'test -f /tmp/started')
  const logs = []
  const info = await Template.build(template, name, { onBuildLogs: (e) => logs.push(e.message) })
  assert.equal(info.name ?? info.alias, name)
  assert.equal(info.templateId.length, 20)
  assert.ok(logs.includes('step-output'), JSON.stringify(logs))
  assert.equal(await Template.exists(name), true)
  await withSandbox({ template: name }, async (sbx) => {
    const r = await sbx.commands.run('cat hello.txt built.txt /tmp/started; echo $COMPAT; whoami; pwd')
    assert.equal(r.stdout, 'hello from the context\nbuilt-by-user\nstarted\nyes\nuser\n/home/user\n')
  })
})

check('template_build_failure_names_the_step', async () => {
  const template = Template().fromTemplate('base').runCmd('echo fine').runCmd('echo boom >&2; exit 7')
  await assert.rejects(Template.build(template, `compat-fail-${TAG}`), (e) => {
    assert.ok(e instanceof BuildError, String(e))
    assert.equal(e.message, 'the step failed with exit code 7: boom')
    return true
  })
  assert.equal(await Template.exists(`compat-missing-${TAG}`), false)
})

// --- volumes -----------------------------------------------------------------------------

const V = await import(pathToFileURL(entry).href)
// Volume names are letters, digits, '_' and '-'.
const volumeName = (what) => `compat-${LABEL}-${what}-${TAG}`.replaceAll('.', '-')

check('volume_create_list_get_connect_destroy', async () => {
  assert.equal(process.env.E2B_VOLUME_API_URL, process.env.E2B_API_URL)
  const name = volumeName('crud')
  const vol = await V.Volume.create(name)
  try {
    assert.equal(vol.name, name)
    assert.equal(vol.token.length, 64)
    assert.ok((await V.Volume.list()).some((v) => v.volumeId === vol.volumeId && v.name === name))
    assert.deepEqual(await V.Volume.getInfo(vol.volumeId), { volumeId: vol.volumeId, name, token: vol.token, domain: undefined })
    assert.equal((await V.Volume.connect(vol.volumeId)).token, vol.token)
    await assert.rejects(V.Volume.create(name), (e) => {
      assert.ok(e instanceof V.VolumeError, String(e))
      assert.equal(e.message, `409: a volume named '${name}' already exists`)
      return true
    })
    await assert.rejects(V.Volume.getInfo(`missing-${TAG}`), (e) => {
      assert.ok(e instanceof V.VolumeNotFoundError, String(e))
      assert.equal(e.message, `Volume missing-${TAG} not found`)
      return true
    })
  } finally {
    assert.equal(await V.Volume.destroy(vol.volumeId), true)
  }
  assert.equal(await V.Volume.destroy(vol.volumeId), false)
})

check('volume_files_read_write_list_stat_remove', async () => {
  const vol = await V.Volume.create(volumeName('files'))
  try {
    await assert.rejects(vol.writeFile('/dir/a.txt', 'alpha'), (e) => {
      assert.ok(e instanceof V.VolumePathNotFoundError, String(e))
      assert.equal(e.message, 'Path /dir/a.txt not found')
      return true
    })
    const st = await vol.writeFile('/dir/a.txt', 'alpha', { force: true })
    assert.deepEqual(
      [st.name, st.type, st.path, st.size, st.mode, st.uid, st.gid],
      ['a.txt', V.VolumeFileType.FILE, '/dir/a.txt', 5, 0o644, 1000, 1000],
    )
    assert.ok(st.mtime instanceof Date && !Number.isNaN(st.mtime.getTime()), String(st.mtime))
    assert.equal(await vol.readFile('/dir/a.txt'), 'alpha')
    assert.deepEqual(Buffer.from(await vol.readFile('/dir/a.txt', { format: 'bytes' })), Buffer.from('alpha'))
    const data = Buffer.alloc(1 << 20, 7)
    const stream = new ReadableStream({
      start(c) {
        c.enqueue(new Uint8Array(data.subarray(0, 1 << 19)))
        c.enqueue(new Uint8Array(data.subarray(1 << 19)))
        c.close()
      },
    })
    assert.equal((await vol.writeFile('/dir/b.bin', stream, { mode: 0o600 })).size, data.length)
    const chunks = []
    for await (const c of await vol.readFile('/dir/b.bin', { format: 'stream' })) chunks.push(Buffer.from(c))
    assert.equal(createHash('sha256').update(Buffer.concat(chunks)).digest('hex'), createHash('sha256').update(data).digest('hex'))
    const d = await vol.makeDir('/dir/sub')
    assert.deepEqual([d.type, d.mode], [V.VolumeFileType.DIRECTORY, 0o755])
    await assert.rejects(vol.makeDir('/dir/sub'), (e) => {
      assert.ok(e instanceof V.VolumeError, String(e))
      assert.equal(e.message, "409: path '/dir/sub' already exists")
      return true
    })
    assert.deepEqual((await vol.list('/', { depth: 2 })).map((e) => e.path), ['/dir', '/dir/a.txt', '/dir/b.bin', '/dir/sub'])
    assert.equal(await vol.exists('/dir/sub'), true)
    assert.equal(await vol.exists('/nope'), false)
    const changed = await vol.updateMetadata('/dir/a.txt', { mode: 0o640 })
    assert.equal(changed.mode, 0o640)
    assert.equal((await vol.getInfo('/dir/b.bin')).size, data.length)
    await vol.remove('/dir/sub')
    assert.equal(await vol.exists('/dir/sub'), false)
    await assert.rejects(vol.readFile('/../etc/passwd'), (e) => {
      assert.ok(e instanceof V.VolumeError, String(e))
      assert.equal(e.message, "400: invalid path '/../etc/passwd': '..' is not allowed in a volume path")
      return true
    })
    const forged = new V.Volume(vol.volumeId, vol.name, 'wrong')
    await assert.rejects(forged.list('/'), (e) => {
      assert.equal(e.name, 'AuthenticationError', String(e))
      assert.equal(e.message, `Unauthorized, please check your credentials. - invalid token for volume '${vol.volumeId}'`)
      return true
    })
  } finally {
    await V.Volume.destroy(vol.volumeId)
  }
})

check('volume_mounts_shared_by_two_sandboxes', async () => {
  const name = volumeName('shared')
  const vol = await V.Volume.create(name)
  try {
    const a = await newSandbox({ volumeMounts: { '/mnt/shared': vol } })
    const b = await newSandbox({ volumeMounts: { '/home/user/data': name } })
    try {
      assert.equal((await a.commands.run("echo from-a > /mnt/shared/note && stat -c '%U %a' /mnt/shared")).stdout, 'user 755\n')
      assert.equal((await b.commands.run('cat /home/user/data/note')).stdout, 'from-a\n')
      assert.equal(await vol.readFile('/note'), 'from-a\n')
      await vol.writeFile('/from-api.txt', 'api')
      assert.equal((await a.commands.run('cat /mnt/shared/from-api.txt')).stdout, 'api')
      assert.deepEqual((await a.getInfo()).volumeMounts, [{ name, path: '/mnt/shared' }])
      const both = [a.sandboxId, b.sandboxId].sort().join(', ')
      await assert.rejects(V.Volume.destroy(vol.volumeId), (e) => {
        assert.ok(e instanceof V.VolumeError, String(e))
        assert.equal(e.message, `409: volume '${name}' is mounted by sandboxes ${both}; kill them first`)
        return true
      })
    } finally {
      await Sandbox.kill(a.sandboxId).catch(() => {})
      await Sandbox.kill(b.sandboxId).catch(() => {})
    }
    await assert.rejects(newSandbox({ volumeMounts: { '/mnt/x': `missing-${TAG}` } }), (e) => {
      assert.ok(e instanceof SandboxError, String(e))
      assert.equal(e.message, `400: volumeMounts[0].name: volume 'missing-${TAG}' not found`)
      return true
    })
  } finally {
    assert.equal(await V.Volume.destroy(vol.volumeId), true)
  }
})

let passed = 0
let failed = 0
for (const [name, fn] of CHECKS) {
  try {
    await fn()
    passed++
    console.log(`PASS ${LABEL} ${name}`)
  } catch (e) {
    failed++
    console.log(`FAIL ${LABEL} ${name}`)
    console.log(e?.stack ?? String(e))
  }
}
try {
  for (const s of await Sandbox.list({ query: { metadata: { compat: TAG } } }).nextItems()) {
    await Sandbox.kill(s.sandboxId).catch(() => {})
  }
} catch {
  // cleanup only
}
console.log(`${passed} passed, ${failed} failed`)
process.exit(failed === 0 ? 0 : 1)
