// What bench.mjs and chain.mjs share: the statement counter on the pg driver, the pinned
// framework's version, a fresh database per run, the timed region and the JSON line.
//
// Contract:
// - Server from INTERAQT_TEST_PG (default postgresql://postgres@127.0.0.1:5432/test). interaqt's
//   PostgreSQLDB owns a whole database (its open() creates it), so withController gives each run
//   a fresh database `bench_orig_<random>`, dropped (WITH (FORCE)) afterwards, also on failure.
// - timed(body): body's wall seconds, the queries the pg driver sent meanwhile (every
//   Client.prototype.query, BEGIN/COMMIT included) and this process's CPU (user + system).
// - report(...) prints the one JSON line; main(fn) runs fn and exits 1 with the reason on failure.
import pg from 'pg'
import { randomBytes } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import { readFileSync } from 'node:fs'
import { Controller, KlassByName, MonoSystem } from 'interaqt'
import { PostgreSQLDB } from 'interaqt/drivers'

// The benchmark's instrument: every query the pg driver sends (pools run theirs on Clients).
let sent = 0
const query = pg.Client.prototype.query
pg.Client.prototype.query = function counted(...args) {
  sent += 1
  return query.apply(this, args)
}

export const VERSION = JSON.parse(
  readFileSync(new URL('./node_modules/interaqt/package.json', import.meta.url), 'utf8'),
).version

function serverOptions() {
  const url = new URL(
    (process.env.INTERAQT_TEST_PG || '').trim() || 'postgresql://postgres@127.0.0.1:5432/test',
  )
  return {
    host: url.hostname,
    port: Number(url.port || 5432),
    user: decodeURIComponent(url.username || 'postgres'),
    password: url.password ? decodeURIComponent(url.password) : undefined,
  }
}

// body(controller, system) on a set-up Controller of `model` (entities, relations, eventSources)
// with `sideEffects`, in a fresh database dropped afterwards; returns what body returns.
export async function withController(model, sideEffects, body) {
  const options = serverOptions()
  const database = `bench_orig_${randomBytes(6).toString('hex')}`
  const db = new PostgreSQLDB(database, options)
  try {
    const system = new MonoSystem(db)
    system.conceptClass = KlassByName
    const controller = new Controller({
      system,
      entities: model.entities,
      relations: model.relations,
      eventSources: model.eventSources,
      dict: [],
      recordMutationSideEffects: sideEffects,
    })
    await controller.setup(true)
    return await body(controller, system)
  } finally {
    await db.close()
    const admin = new pg.Client({ ...options, database: 'postgres' })
    await admin.connect()
    try {
      await admin.query(`DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`)
    } finally {
      await admin.end()
    }
  }
}

export async function timed(body) {
  const before = sent
  const cpuBefore = process.cpuUsage()
  const start = performance.now()
  await body()
  const seconds = (performance.now() - start) / 1000
  return { seconds, statements: sent - before, cpu: process.cpuUsage(cpuBefore) }
}

export function report(workload, n, path, { seconds, statements, cpu }) {
  console.log(JSON.stringify({
    workload,
    n,
    seconds: Math.round(seconds * 1e6) / 1e6,
    ops_per_second: Math.round((n / seconds) * 10) / 10,
    path,
    statements_per_op: Math.round((statements / n) * 100) / 100,
    cpu_seconds: Math.round(cpu.user + cpu.system) / 1e6,
    framework_version: VERSION,
  }))
}

export function main(fn) {
  fn().catch((error) => {
    console.error(error && error.stack ? error.stack : String(error))
    process.exit(1)
  })
}
