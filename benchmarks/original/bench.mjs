// The original interaqt framework (npm `interaqt`, pinned in package.json) on PostgreSQL: the
// count and summation workloads of benchmarks/chain.py, built with its own API.
//
// Usage: node bench.mjs <count|summation> <n> [dispatch|storage]
// Prints one JSON line: workload, n, seconds, ops_per_second, path, framework_version.
//
// Contract:
// - Server from INTERAQT_TEST_PG (default postgresql://postgres@127.0.0.1:5432/test). interaqt's
//   PostgreSQLDB owns a whole database (its open() creates it), so each run gets a fresh
//   database `bench_orig_<random>`, dropped (WITH (FORCE)) afterwards, also on failure.
// - count: likes one at a time on one post; Post.likes is Count.create({property: 'likedBy'})
//   over the n:n relation Post.likedBy <-> User.liked. `warm` likes on another post first
//   (untimed), then n likes on the post, timed; fails unless the post's likes == n.
// - summation: n items one at a time on one order; Order.total is WeightedSummation.create over
//   the 1:n relation Order.items <-> Item.order with weight quantity, value price (interaqt's
//   WeightedSummation is sum(weight * value), the same as ours); fails unless total == the sum.
// - path `dispatch` (the default, the framework's documented normal path): each like/item is
//   one controller.dispatch of an Interaction; a Transform over InteractionEventEntity creates
//   the relation record / the Item, and the computations run in that dispatch's transaction.
//   path `storage`: system.storage.create of the relation record / Item directly (what our
//   engine's benchmark does); interaqt documents storage.create as a test-setup path, so the
//   script verifies the computed value either way and fails loudly when it was not maintained.
// - statements_per_op: queries sent through the pg driver while timed (Client.prototype.query is
//   counted; BEGIN/COMMIT included), over n; cpu_seconds: this node process's CPU time (user +
//   system) while timed, so seconds - cpu_seconds is roughly time spent waiting on the server.
// Exit status: 0 with one JSON line on stdout; non-zero with the reason on stderr.
import {
  Action,
  Count,
  Entity,
  Interaction,
  InteractionEventEntity,
  MatchExp,
  Payload,
  PayloadItem,
  Property,
  Relation,
  Transform,
  WeightedSummation,
} from 'interaqt'
import { main, report, timed, withController } from './harness.mjs'

// One like: an Interaction whose event a Transform on the relation turns into a Post-User link
// (path dispatch); without the Transform for path storage (interaqt refuses direct creates of
// Transform-owned records: a unique index on the source event).
function countModel(path) {
  const User = Entity.create({ name: 'User', properties: [Property.create({ name: 'name', type: 'string' })] })
  const Post = Entity.create({
    name: 'Post',
    properties: [
      Property.create({ name: 'title', type: 'string' }),
      Property.create({
        name: 'likes',
        type: 'number',
        computation: Count.create({ property: 'likedBy' }),
      }),
    ],
  })
  const Like = Interaction.create({
    name: 'LikePost',
    action: Action.create({ name: 'likePost' }),
    payload: Payload.create({
      items: [
        PayloadItem.create({ name: 'postId', type: 'string', required: true }),
        PayloadItem.create({ name: 'userId', type: 'string', required: true }),
      ],
    }),
  })
  const Likes = Relation.create({
    source: Post,
    sourceProperty: 'likedBy',
    target: User,
    targetProperty: 'liked',
    type: 'n:n',
    computation: path !== 'dispatch' ? undefined : Transform.create({
      record: InteractionEventEntity,
      attributeQuery: ['interactionName', 'payload'],
      callback(event) {
        if (event.interactionName !== 'LikePost') return null
        return { source: { id: event.payload.postId }, target: { id: event.payload.userId } }
      },
    }),
  })
  return { entities: [User, Post], relations: [Likes], eventSources: [Like], Like, Likes }
}

function summationModel(path) {
  const Item = Entity.create({
    name: 'Item',
    properties: [
      Property.create({ name: 'price', type: 'number' }),
      Property.create({ name: 'quantity', type: 'number' }),
    ],
    computation: path !== 'dispatch' ? undefined : Transform.create({
      record: InteractionEventEntity,
      attributeQuery: ['interactionName', 'payload'],
      callback(event) {
        if (event.interactionName !== 'AddItem') return null
        const { price, quantity, orderId } = event.payload
        return { price, quantity, order: { id: orderId } }
      },
    }),
  })
  const Order = Entity.create({
    name: 'Order',
    properties: [
      Property.create({
        name: 'total',
        type: 'number',
        computation: WeightedSummation.create({
          property: 'items',
          direction: 'source',
          attributeQuery: ['price', 'quantity'],
          callback: (item) => ({ weight: item.quantity, value: item.price }),
        }),
      }),
    ],
  })
  const Items = Relation.create({
    source: Order,
    sourceProperty: 'items',
    target: Item,
    targetProperty: 'order',
    type: '1:n',
  })
  const AddItem = Interaction.create({
    name: 'AddItem',
    action: Action.create({ name: 'addItem' }),
    payload: Payload.create({
      items: [
        PayloadItem.create({ name: 'orderId', type: 'string', required: true }),
        PayloadItem.create({ name: 'price', type: 'number', required: true }),
        PayloadItem.create({ name: 'quantity', type: 'number', required: true }),
      ],
    }),
  })
  return { entities: [Item, Order], relations: [Items], eventSources: [AddItem], AddItem }
}

async function dispatch(controller, interaction, payload) {
  const result = await controller.dispatch(interaction, { user: { id: 'bench' }, payload })
  if (result.error) {
    throw new Error(`dispatch of ${interaction.name} failed: ${result.error.message ?? result.error}`)
  }
}

async function findOne(system, name, id, fields) {
  return system.storage.findOne(name, MatchExp.atom({ key: 'id', value: ['=', id] }), undefined, ['id', ...fields])
}

async function runCount(controller, system, model, n, path, warm) {
  const post = await system.storage.create('Post', { title: 'p' })
  const warmUp = await system.storage.create('Post', { title: 'warm-up' })
  const fan = await system.storage.create('User', { name: 'fan' })
  const like = path === 'dispatch'
    ? (postId) => dispatch(controller, model.Like, { postId: String(postId), userId: String(fan.id) })
    : (postId) => system.storage.create(model.Likes.name, { source: { id: postId }, target: { id: fan.id } })
  for (let i = 0; i < warm; i++) await like(warmUp.id)
  const measured = await timed(async () => {
    for (let i = 0; i < n; i++) await like(post.id)
  })
  const final = await findOne(system, 'Post', post.id, ['likes'])
  if (!final || Number(final.likes) !== n) {
    throw new Error(`count: Post ${post.id} has likes=${final && final.likes}, expected ${n} (path ${path})`)
  }
  return measured
}

async function runSummation(controller, system, model, n, path) {
  const order = await system.storage.create('Order', {})
  let expected = 0
  const measured = await timed(async () => {
    for (let i = 0; i < n; i++) {
      const price = 1 + (i % 7)
      const quantity = 1 + (i % 3)
      expected += price * quantity
      if (path === 'dispatch') {
        await dispatch(controller, model.AddItem, { orderId: String(order.id), price, quantity })
      } else {
        await system.storage.create('Item', { price, quantity, order: { id: order.id } })
      }
    }
  })
  const final = await findOne(system, 'Order', order.id, ['total'])
  if (!final || Number(final.total) !== expected) {
    throw new Error(`summation: Order ${order.id} has total=${final && final.total}, expected ${expected} (path ${path})`)
  }
  return measured
}

main(async () => {
  const [workload, nArg, path = 'dispatch'] = process.argv.slice(2)
  const n = Number(nArg)
  if (!['count', 'summation'].includes(workload) || !(n > 0) || !['dispatch', 'storage'].includes(path)) {
    throw new Error('usage: node bench.mjs <count|summation> <n> [dispatch|storage]')
  }
  const warm = Number(process.env.WARM ?? Math.min(20, n))
  const model = workload === 'count' ? countModel(path) : summationModel(path)
  const measured = await withController(model, [], (controller, system) => workload === 'count'
    ? runCount(controller, system, model, n, path, warm)
    : runSummation(controller, system, model, n, path))
  report(`original_${workload}`, n, path, measured)
})
