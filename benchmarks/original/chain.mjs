// The original interaqt framework (npm `interaqt`, pinned in package.json) on PostgreSQL: the
// chain of benchmarks/chain.py, built with its own API.
//
// Usage: node chain.mjs <n>
// Prints one JSON line: workload original_chain, n, seconds, ops_per_second (chains/s),
// statements_per_op, cpu_seconds, framework_version.
//
// The chain, as close to ours as interaqt's API allows:
// - controller.dispatch(Greet, {text}) -> a Transform over InteractionEventEntity creates the
//   Greeting and, nested, its TTSCall (1:n Greeting.ttsCalls <-> TTSCall.greeting).
// - A RecordMutationSideEffect on TTSCall (create) writes three TTSEvents (initialized,
//   processing, completed) through system.storage.create: interaqt runs side effects after the
//   dispatch commits and dispatch awaits them; each create is its own transaction (ours writes
//   the three in one).
// - TTSCall.status is a StateMachine (pending/processing/completed/failed) whose transfers fire
//   on TTSEvent creates of the event type, target found by externalId; TTSCall.externalId and
//   TTSCall.responseData are one-state StateMachines whose computeValue takes the event's field
//   (interaqt's Custom has no trigger/target form; this is its documented pattern for values
//   set from events); Greeting.voiceUrl likewise takes the completed event's url, its target
//   the Greeting of the call with that externalId (ours derives it from the call's update).
// Verified: n calls completed, n greetings with a voiceUrl; fails loudly otherwise.
// Server, database, counting and the JSON line: harness.mjs (a fresh database, dropped afterwards).
import {
  Action,
  Entity,
  Interaction,
  InteractionEventEntity,
  MatchExp,
  Payload,
  PayloadItem,
  Property,
  RecordMutationSideEffect,
  Relation,
  StateMachine,
  StateNode,
  StateTransfer,
  Transform,
} from 'interaqt'
import { main, report, timed, withController } from './harness.mjs'

const onEvent = (eventType) => ({ recordName: 'TTSEvent', type: 'create', record: { eventType } })

// The event's record, whichever form computeValue is handed (the mutation event or its record).
const recordOf = (event) => (event && event.record) || event

async function callByExternalId(mutation) {
  const call = await this.system.storage.findOne(
    'TTSCall',
    MatchExp.atom({ key: 'externalId', value: ['=', mutation.record.externalId] }),
    undefined,
    ['id'],
  )
  return call ? { id: call.id } : undefined
}

function model() {
  const TTSEvent = Entity.create({
    name: 'TTSEvent',
    properties: [
      Property.create({ name: 'eventType', type: 'string' }),
      Property.create({ name: 'entityId', type: 'number' }),
      Property.create({ name: 'externalId', type: 'string' }),
      Property.create({ name: 'data', type: 'object' }),
    ],
  })
  const pending = StateNode.create({ name: 'pending' })
  const processing = StateNode.create({ name: 'processing' })
  const completed = StateNode.create({ name: 'completed' })
  const failed = StateNode.create({ name: 'failed' })
  const moves = [
    [pending, processing, 'processing'],
    [pending, completed, 'completed'],
    [processing, completed, 'completed'],
    [pending, failed, 'failed'],
    [processing, failed, 'failed'],
  ]
  const status = StateMachine.create({
    states: [pending, processing, completed, failed],
    transfers: moves.map(([current, next, eventType]) =>
      StateTransfer.create({ current, next, trigger: onEvent(eventType), computeTarget: callByExternalId }),
    ),
    initialState: pending,
  })
  // A one-state machine whose value is computed from the event that re-enters the state.
  const takeOn = (eventType, value, computeTarget) => {
    const node = StateNode.create({
      name: `set_${eventType}`,
      computeValue: (last, event) => (event ? value(recordOf(event)) : null),
    })
    return StateMachine.create({
      states: [node],
      transfers: [StateTransfer.create({ current: node, next: node, trigger: onEvent(eventType), computeTarget })],
      initialState: node,
    })
  }
  const TTSCall = Entity.create({
    name: 'TTSCall',
    properties: [
      Property.create({ name: 'requestParams', type: 'object' }),
      Property.create({ name: 'status', type: 'string', computation: status }),
      Property.create({
        name: 'externalId',
        type: 'string',
        computation: takeOn('initialized', (r) => r.externalId, (m) => ({ id: m.record.entityId })),
      }),
      Property.create({
        name: 'responseData',
        type: 'object',
        computation: takeOn('completed', (r) => r.data, callByExternalId),
      }),
    ],
  })
  async function greetingOf(mutation) {
    const greeting = await this.system.storage.findOne(
      'Greeting',
      MatchExp.atom({ key: 'ttsCalls.externalId', value: ['=', mutation.record.externalId] }),
      undefined,
      ['id'],
    )
    return greeting ? { id: greeting.id } : undefined
  }
  const Greeting = Entity.create({
    name: 'Greeting',
    properties: [
      Property.create({ name: 'text', type: 'string' }),
      Property.create({
        name: 'voiceUrl',
        type: 'string',
        computation: takeOn('completed', (r) => (r.data && r.data.url) || null, greetingOf),
      }),
    ],
    computation: Transform.create({
      record: InteractionEventEntity,
      attributeQuery: ['interactionName', 'payload'],
      callback(event) {
        if (event.interactionName !== 'Greet') return null
        return { text: event.payload.text, ttsCalls: [{ requestParams: { text: event.payload.text } }] }
      },
    }),
  })
  const Calls = Relation.create({
    source: Greeting,
    sourceProperty: 'ttsCalls',
    target: TTSCall,
    targetProperty: 'greeting',
    type: '1:n',
  })
  const Greet = Interaction.create({
    name: 'Greet',
    action: Action.create({ name: 'greet' }),
    payload: Payload.create({ items: [PayloadItem.create({ name: 'text', type: 'string', required: true })] }),
  })
  const tts = RecordMutationSideEffect.create({
    name: 'tts',
    record: { name: 'TTSCall' },
    async content(event) {
      if (event.type !== 'create') return
      const callId = event.record.id
      const externalId = `task-${callId}`
      const sequence = [
        ['initialized', null],
        ['processing', null],
        ['completed', { url: `https://cdn.example/${callId}.mp3` }],
      ]
      for (const [eventType, data] of sequence) {
        await this.system.storage.create('TTSEvent', { eventType, entityId: callId, externalId, data })
      }
    },
  })
  return { entities: [Greeting, TTSCall, TTSEvent], relations: [Calls], eventSources: [Greet], Greet, tts }
}

main(async () => {
  const n = Number(process.argv[2])
  if (!(n > 0)) throw new Error('usage: node chain.mjs <n>')
  const m = model()
  const measured = await withController(m, [m.tts], async (controller, system) => {
    const result = await timed(async () => {
      for (let i = 0; i < n; i++) {
        const outcome = await controller.dispatch(m.Greet, { user: { id: 'bench' }, payload: { text: `hello ${i}` } })
        if (outcome.error) throw new Error(`dispatch of Greet failed: ${outcome.error.message ?? outcome.error}`)
        const failures = outcome.postCommitPhase && outcome.postCommitPhase.failures
        if (failures && failures.length) throw new Error(`side effect failed: ${JSON.stringify(failures)}`)
      }
    })
    const calls = await system.storage.find('TTSCall', undefined, undefined, ['id', 'status', 'externalId', 'responseData'])
    const greetings = await system.storage.find('Greeting', undefined, undefined, ['id', 'voiceUrl'])
    const done = calls.filter((c) => c.status === 'completed').length
    const urls = greetings.filter((g) => g.voiceUrl).length
    if (done !== n || urls !== n || calls.length !== n) {
      throw new Error(
        `chain: ${calls.length} calls, ${done} completed, ${urls} greetings with voiceUrl; expected ${n} ` +
          `(first call ${JSON.stringify(calls[0])}, first greeting ${JSON.stringify(greetings[0])})`,
      )
    }
    return result
  })
  report('original_chain', n, 'dispatch', measured)
})
