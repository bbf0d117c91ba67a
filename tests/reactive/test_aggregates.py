"""Count, Summation, WeightedSummation, Average, Every, Any: on dictionaries and properties."""

from __future__ import annotations

from typing import Any

import pytest

import reactive as r
from storage import SQLiteStorage

from .conftest import MakeController
from .helpers import Calls

# -- property form: Post.<aggregate> over Post.likes (n:n to User, link field "weight") ------


def likes_model(**aggregates: r.Computation) -> tuple[r.Entity, r.Entity, r.Relation]:
    user = r.Entity(
        "User",
        [
            r.Property("name"),
            r.Property("karma", "number"),
            r.Property("ok", "boolean"),
            r.Property("note", "json"),
        ],
    )
    post = r.Entity(
        "Post",
        [r.Property("title")]
        + [r.Property(name, "json", computation=comp) for name, comp in aggregates.items()],
    )
    likes = r.Relation(
        post,
        "likes",
        user,
        "liked",
        "n:n",
        properties=[r.Property("weight", "number", default=1), r.Property("tag")],
    )
    return user, post, likes


async def post_values(c: r.Controller, post_id: Any, *fields: str) -> dict[str, Any]:
    row = await c.storage.find_one("Post", {"id": post_id}, list(fields))
    assert row is not None
    return {f: row[f] for f in fields}


async def test_property_count_follows_links_and_related_deletes(make: MakeController) -> None:
    user, post, likes = likes_model(n=r.Count(property="likes"))
    c = await make([user, post], [likes])
    a = await c.storage.create("User", {"name": "a"})
    b = await c.storage.create("User", {"name": "b"})
    d = await c.storage.create("User", {"name": "d"})
    p = await c.storage.create("Post", {"title": "x"})
    assert await post_values(c, p["id"], "n") == {"n": 0}

    # by reference in an update, and by creating the relation record
    await c.storage.update("Post", {"id": p["id"]}, {"likes": [{"id": a["id"]}]})
    assert await post_values(c, p["id"], "n") == {"n": 1}
    await c.storage.create(likes, {"source": {"id": p["id"]}, "target": {"id": b["id"]}})
    await c.storage.create(likes, {"source": {"id": p["id"]}, "target": {"id": d["id"]}})
    assert await post_values(c, p["id"], "n") == {"n": 3}

    # deleting the link
    await c.storage.delete(likes, {"target": {"id": a["id"]}})
    assert await post_values(c, p["id"], "n") == {"n": 2}
    # deleting the related entity (its link goes with it)
    await c.storage.delete("User", {"id": b["id"]})
    assert await post_values(c, p["id"], "n") == {"n": 1}
    assert await c.storage.count(likes) == 1


async def test_property_count_counts_only_the_hosts_own_links(make: MakeController) -> None:
    user, post, likes = likes_model(n=r.Count(property="likes"))
    c = await make([user, post], [likes])
    a = await c.storage.create("User", {"name": "a"})
    b = await c.storage.create("User", {"name": "b"})
    p = await c.storage.create("Post", {"title": "p", "likes": [{"id": a["id"]}, {"id": b["id"]}]})
    q = await c.storage.create("Post", {"title": "q", "likes": [{"id": a["id"]}]})

    assert await post_values(c, p["id"], "n") == {"n": 2}
    assert await post_values(c, q["id"], "n") == {"n": 1}
    await c.storage.delete("User", {"id": a["id"]})
    assert await post_values(c, p["id"], "n") == {"n": 1}
    assert await post_values(c, q["id"], "n") == {"n": 0}


async def test_count_on_the_other_end_of_a_relation(make: MakeController) -> None:
    user = r.Entity(
        "User",
        [
            r.Property("name"),
            r.Property("posts_n", "number", computation=r.Count(property="posts")),
        ],
    )
    post = r.Entity("Post", [r.Property("title")])
    authors = r.Relation(user, "posts", post, "author", "1:n")
    c = await make([user, post], [authors])
    ada = await c.storage.create("User", {"name": "ada"})
    bob = await c.storage.create("User", {"name": "bob"})
    p1 = await c.storage.create("Post", {"title": "1", "author": {"id": ada["id"]}})
    await c.storage.create("Post", {"title": "2", "author": {"id": ada["id"]}})

    async def counts() -> list[int]:
        rows = await c.storage.find("User", None, ["posts_n"], order_by={"id": "asc"})
        return [row["posts_n"] for row in rows]

    assert await counts() == [2, 0]
    # re-pointing the 1:n link moves the count
    await c.storage.update("Post", {"id": p1["id"]}, {"author": {"id": bob["id"]}})
    assert await counts() == [1, 1]
    await c.storage.delete("Post", {"id": p1["id"]})
    assert await counts() == [1, 0]


async def test_property_count_with_record_relation_and_direction(make: MakeController) -> None:
    user = r.Entity("User", [r.Property("name")])
    follows = r.Relation(user, "following", user, "followers", "n:n")
    user.properties.extend(
        [
            r.Property(
                "following_n", "number", computation=r.Count(record=follows, direction="source")
            ),
            r.Property(
                "followers_n", "number", computation=r.Count(record=follows, direction="target")
            ),
        ]
    )
    c = await make([user], [follows])
    a = await c.storage.create("User", {"name": "a"})
    b = await c.storage.create("User", {"name": "b", "following": [{"id": a["id"]}]})
    await c.storage.create("User", {"name": "c", "following": [{"id": a["id"]}]})

    rows = await c.storage.find("User", None, ["name", "following_n", "followers_n"])
    assert {row["name"]: (row["following_n"], row["followers_n"]) for row in rows} == {
        "a": (0, 2),
        "b": (1, 0),
        "c": (1, 0),
    }
    await c.storage.delete("User", {"id": b["id"]})
    rows = await c.storage.find("User", None, ["name", "following_n", "followers_n"])
    assert {row["name"]: (row["following_n"], row["followers_n"]) for row in rows} == {
        "a": (0, 1),
        "c": (1, 0),
    }


async def test_symmetric_relation_count_is_one_on_each_end(make: MakeController) -> None:
    user = r.Entity("User", [r.Property("name")])
    friends = r.Relation(user, "friends", user, "friends", "n:n")
    user.properties.append(
        r.Property("friends_n", "number", computation=r.Count(property="friends"))
    )
    c = await make([user], [friends])
    a = await c.storage.create("User", {"name": "a"})
    b = await c.storage.create("User", {"name": "b"})
    lone = await c.storage.create("User", {"name": "lone"})

    await c.storage.create(friends, {"source": {"id": a["id"]}, "target": {"id": b["id"]}})

    async def counts() -> dict[str, int]:
        rows = await c.storage.find("User", None, ["name", "friends_n"])
        return {row["name"]: row["friends_n"] for row in rows}

    assert await counts() == {"a": 1, "b": 1, "lone": 0}
    await c.storage.update("User", {"id": lone["id"]}, {"friends": [{"id": a["id"]}]})
    assert await counts() == {"a": 2, "b": 1, "lone": 1}
    await c.storage.delete(friends, {"source": {"id": a["id"]}, "target": {"id": b["id"]}})
    assert await counts() == {"a": 1, "b": 0, "lone": 1}
    await c.storage.delete("User", {"id": lone["id"]})
    assert await counts() == {"a": 0, "b": 0}


async def test_property_summation_of_a_link_field(make: MakeController) -> None:
    user, post, likes = likes_model(
        total=r.Summation(property="likes", attribute_query=[("&", ["weight"])])
    )
    c = await make([user, post], [likes])
    a = await c.storage.create("User", {"name": "a"})
    b = await c.storage.create("User", {"name": "b"})
    p = await c.storage.create(
        "Post",
        {"title": "x", "likes": [{"id": a["id"], "&": {"weight": 3}}, {"id": b["id"]}]},
    )
    assert await post_values(c, p["id"], "total") == {"total": 4}  # 3 + default 1

    link_b = await c.storage.find_one(likes, {"target": {"id": b["id"]}})
    assert link_b is not None
    await c.storage.update(likes, {"id": link_b["id"]}, {"weight": 10})
    assert await post_values(c, p["id"], "total") == {"total": 13}

    await c.storage.delete(likes, {"id": link_b["id"]})
    assert await post_values(c, p["id"], "total") == {"total": 3}
    await c.storage.delete("User", {"id": a["id"]})
    assert await post_values(c, p["id"], "total") == {"total": 0}


async def test_property_summation_of_a_related_field(make: MakeController) -> None:
    user, post, likes = likes_model(total=r.Summation(property="likes", attribute_query=["karma"]))
    c = await make([user, post], [likes])
    a = await c.storage.create("User", {"name": "a", "karma": 5})
    b = await c.storage.create("User", {"name": "b", "karma": 7})
    p = await c.storage.create("Post", {"title": "x", "likes": [{"id": a["id"]}, {"id": b["id"]}]})
    assert await post_values(c, p["id"], "total") == {"total": 12}

    await c.storage.update("User", {"id": a["id"]}, {"karma": 50})
    assert await post_values(c, p["id"], "total") == {"total": 57}
    await c.storage.delete(likes, {"target": {"id": b["id"]}})
    assert await post_values(c, p["id"], "total") == {"total": 50}


async def test_property_summation_forgets_a_deleted_related_entity(make: MakeController) -> None:
    user, post, likes = likes_model(
        total=r.Summation(property="likes", attribute_query=["karma"]),
        avg=r.Average(property="likes", attribute_query=["karma"]),
    )
    c = await make([user, post], [likes])
    a = await c.storage.create("User", {"name": "a", "karma": 5})
    b = await c.storage.create("User", {"name": "b", "karma": 7})
    p = await c.storage.create("Post", {"title": "x", "likes": [{"id": a["id"]}, {"id": b["id"]}]})
    assert await post_values(c, p["id"], "total", "avg") == {"total": 12, "avg": 6}

    await c.storage.delete("User", {"id": a["id"]})

    assert await post_values(c, p["id"], "total", "avg") == {"total": 7, "avg": 7}


async def test_property_every_and_any_forget_a_deleted_related_entity(
    make: MakeController,
) -> None:
    ok = lambda u: bool(u["ok"])  # noqa: E731
    user, post, likes = likes_model(
        every=r.Every(property="likes", callback=ok, attribute_query=["ok"]),
        any=r.Any(property="likes", callback=ok, attribute_query=["ok"]),
    )
    c = await make([user, post], [likes])
    good = await c.storage.create("User", {"name": "good", "ok": True})
    other = await c.storage.create("User", {"name": "other", "ok": True})
    p = await c.storage.create(
        "Post", {"title": "x", "likes": [{"id": good["id"]}, {"id": other["id"]}]}
    )
    await c.storage.update("User", {"id": other["id"]}, {"ok": False})
    assert await post_values(c, p["id"], "every", "any") == {"every": False, "any": True}

    await c.storage.delete("User", {"id": good["id"]})  # only the failing one is left
    assert await post_values(c, p["id"], "every", "any") == {"every": False, "any": False}
    await c.storage.update("User", {"id": other["id"]}, {"ok": True})
    assert await post_values(c, p["id"], "every", "any") == {"every": True, "any": True}


async def test_summation_counts_non_numbers_as_zero(make: MakeController) -> None:
    user, post, likes = likes_model(total=r.Summation(property="likes", attribute_query=["note"]))
    c = await make([user, post], [likes])
    notes: list[Any] = [4, "abc", None, True, {"x": 1}, 2.5]
    users = [
        await c.storage.create("User", {"name": str(i), "note": n}) for i, n in enumerate(notes)
    ]
    p = await c.storage.create("Post", {"title": "x", "likes": [{"id": u["id"]} for u in users]})
    assert await post_values(c, p["id"], "total") == {"total": 6.5}

    await c.storage.update("User", {"id": users[1]["id"]}, {"note": 10})
    assert await post_values(c, p["id"], "total") == {"total": 16.5}
    await c.storage.update("User", {"id": users[0]["id"]}, {"note": "four"})
    assert await post_values(c, p["id"], "total") == {"total": 12.5}


async def test_property_weighted_summation(make: MakeController) -> None:
    user, post, likes = likes_model(
        score=r.WeightedSummation(
            property="likes",
            callback=lambda u: (u["&"]["weight"], u["karma"]),
            attribute_query=["karma", ("&", ["weight"])],
        )
    )
    c = await make([user, post], [likes])
    a = await c.storage.create("User", {"name": "a", "karma": 5})
    b = await c.storage.create("User", {"name": "b", "karma": 7})
    p = await c.storage.create(
        "Post",
        {"title": "x", "likes": [{"id": a["id"], "&": {"weight": 2}}, {"id": b["id"]}]},
    )
    assert await post_values(c, p["id"], "score") == {"score": 2 * 5 + 1 * 7}

    await c.storage.update("User", {"id": b["id"]}, {"karma": 10})
    assert await post_values(c, p["id"], "score") == {"score": 20}
    await c.storage.update(likes, {"target": {"id": a["id"]}}, {"weight": 0})
    assert await post_values(c, p["id"], "score") == {"score": 10}
    await c.storage.delete(likes, {"target": {"id": b["id"]}})
    assert await post_values(c, p["id"], "score") == {"score": 0}


async def test_property_average(make: MakeController) -> None:
    user, post, likes = likes_model(avg=r.Average(property="likes", attribute_query=["karma"]))
    c = await make([user, post], [likes])
    p = await c.storage.create("Post", {"title": "x"})
    assert await post_values(c, p["id"], "avg") == {"avg": 0}

    a = await c.storage.create("User", {"name": "a", "karma": 4, "liked": [{"id": p["id"]}]})
    assert await post_values(c, p["id"], "avg") == {"avg": 4}
    await c.storage.create("User", {"name": "b", "karma": 8, "liked": [{"id": p["id"]}]})
    await c.storage.create("User", {"name": "n", "karma": None, "liked": [{"id": p["id"]}]})
    assert await post_values(c, p["id"], "avg") == {"avg": 4}  # (4 + 8 + 0) / 3

    await c.storage.update("User", {"id": a["id"]}, {"karma": 7})
    assert await post_values(c, p["id"], "avg") == {"avg": 5}
    await c.storage.delete(likes, {})
    assert await post_values(c, p["id"], "avg") == {"avg": 0}


async def test_property_every_and_any(make: MakeController) -> None:
    ok = lambda u: bool(u["ok"])  # noqa: E731
    user, post, likes = likes_model(
        every=r.Every(property="likes", callback=ok, attribute_query=["ok"]),
        every_ne=r.Every(property="likes", callback=ok, attribute_query=["ok"], not_empty=True),
        any=r.Any(property="likes", callback=ok, attribute_query=["ok"]),
    )
    c = await make([user, post], [likes])
    p = await c.storage.create("Post", {"title": "x"})
    fields = ("every", "every_ne", "any")
    assert await post_values(c, p["id"], *fields) == {
        "every": True,
        "every_ne": False,
        "any": False,
    }

    good = await c.storage.create("User", {"name": "g", "ok": True, "liked": [{"id": p["id"]}]})
    assert await post_values(c, p["id"], *fields) == {"every": True, "every_ne": True, "any": True}

    bad = await c.storage.create("User", {"name": "b", "ok": False, "liked": [{"id": p["id"]}]})
    assert await post_values(c, p["id"], *fields) == {
        "every": False,
        "every_ne": False,
        "any": True,
    }

    await c.storage.update("User", {"id": good["id"]}, {"ok": False})
    assert await post_values(c, p["id"], *fields) == {
        "every": False,
        "every_ne": False,
        "any": False,
    }

    await c.storage.update("User", {"id": bad["id"]}, {"ok": True})
    await c.storage.update("User", {"id": good["id"]}, {"ok": True})
    assert await post_values(c, p["id"], *fields) == {"every": True, "every_ne": True, "any": True}

    # removing the links brings back the empty-set values
    await c.storage.delete(likes, {})
    assert await post_values(c, p["id"], *fields) == {
        "every": True,
        "every_ne": False,
        "any": False,
    }


async def test_every_over_a_link_field(make: MakeController) -> None:
    user, post, likes = likes_model(
        heavy=r.Every(
            property="likes",
            callback=lambda u: u["&"]["weight"] > 1,
            attribute_query=[("&", ["weight"])],
        )
    )
    c = await make([user, post], [likes])
    a = await c.storage.create("User", {"name": "a"})
    b = await c.storage.create("User", {"name": "b"})
    p = await c.storage.create(
        "Post",
        {"title": "x", "likes": [{"id": a["id"], "&": {"weight": 5}}, {"id": b["id"]}]},
    )
    assert await post_values(c, p["id"], "heavy") == {"heavy": False}
    await c.storage.update(likes, {"target": {"id": b["id"]}}, {"weight": 2})
    assert await post_values(c, p["id"], "heavy") == {"heavy": True}
    await c.storage.update(likes, {"target": {"id": a["id"]}}, {"weight": 1})
    assert await post_values(c, p["id"], "heavy") == {"heavy": False}
    await c.storage.delete(likes, {"target": {"id": a["id"]}})
    assert await post_values(c, p["id"], "heavy") == {"heavy": True}


async def test_property_callback_sees_the_item_with_link_fields_under_ampersand(
    make: MakeController,
) -> None:
    seen: list[dict[str, Any]] = []

    def record(item: dict[str, Any]) -> bool:
        seen.append(item)
        return True

    user, post, likes = likes_model(
        n=r.Count(property="likes", callback=record, attribute_query=["name", ("&", ["weight"])])
    )
    c = await make([user, post], [likes])
    a = await c.storage.create("User", {"name": "a", "karma": 9})
    p = await c.storage.create(
        "Post", {"title": "x", "likes": [{"id": a["id"], "&": {"weight": 4}}]}
    )

    assert await post_values(c, p["id"], "n") == {"n": 1}
    assert len(seen) == 1
    item = seen[0]
    assert item["id"] == a["id"]
    assert item["name"] == "a"
    assert item["&"]["weight"] == 4
    assert "karma" not in item  # only what the attribute query names


async def test_property_callback_reruns_only_for_queried_fields(make: MakeController) -> None:
    check = Calls(lambda u: bool(u["ok"]))
    user, post, likes = likes_model(
        n_ok=r.Count(property="likes", callback=check, attribute_query=["ok"])
    )
    c = await make([user, post], [likes])
    a = await c.storage.create("User", {"name": "a", "ok": False})
    p = await c.storage.create("Post", {"title": "x", "likes": [{"id": a["id"]}]})
    assert await post_values(c, p["id"], "n_ok") == {"n_ok": 0}
    before = check.count

    # a field outside attribute_query: no re-evaluation
    await c.storage.update("User", {"id": a["id"]}, {"name": "renamed", "karma": 3})
    assert check.count == before
    # the queried field rewritten with the same value: no re-evaluation either
    await c.storage.update("User", {"id": a["id"]}, {"ok": False})
    assert check.count == before
    # the queried field changes: re-evaluated
    await c.storage.update("User", {"id": a["id"]}, {"ok": True})
    assert check.count > before
    assert await post_values(c, p["id"], "n_ok") == {"n_ok": 1}

    # a link field that is not queried: no re-evaluation
    before = check.count
    await c.storage.update(likes, {"target": {"id": a["id"]}}, {"tag": "t", "weight": 9})
    assert check.count == before
    assert await post_values(c, p["id"], "n_ok") == {"n_ok": 1}


async def test_property_callback_reruns_for_queried_link_fields(make: MakeController) -> None:
    check = Calls(lambda u: u["&"]["tag"] == "hot")
    user, post, likes = likes_model(
        hot=r.Count(property="likes", callback=check, attribute_query=[("&", ["tag"])])
    )
    c = await make([user, post], [likes])
    a = await c.storage.create("User", {"name": "a"})
    p = await c.storage.create("Post", {"title": "x", "likes": [{"id": a["id"]}]})
    before = check.count

    await c.storage.update(likes, {"target": {"id": a["id"]}}, {"weight": 5})
    await c.storage.update("User", {"id": a["id"]}, {"ok": True, "name": "b"})
    assert check.count == before
    await c.storage.update(likes, {"target": {"id": a["id"]}}, {"tag": "hot"})
    assert check.count > before
    assert await post_values(c, p["id"], "hot") == {"hot": 1}


# -- cascades --------------------------------------------------------------------------------


async def test_cascaded_deletes_decrement_counts(make: MakeController) -> None:
    user = r.Entity(
        "User",
        [
            r.Property("name"),
            r.Property("comments_n", "number", computation=r.Count(property="comments")),
        ],
    )
    post = r.Entity(
        "Post",
        [
            r.Property("title"),
            r.Property("comments_n", "number", computation=r.Count(property="comments")),
        ],
    )
    comment = r.Entity("Comment", [r.Property("body"), r.Property("stars", "number")])
    on_post = r.Relation(post, "comments", comment, "post", "1:n", cascade=True)
    by_user = r.Relation(comment, "author", user, "comments", "n:1")
    total = r.Dictionary("comments_total", "number", computation=r.Count(record=comment))
    c = await make([user, post, comment], [on_post, by_user], [total])
    ada = await c.storage.create("User", {"name": "ada"})
    p = await c.storage.create(
        "Post",
        {
            "title": "p",
            "comments": [
                {"body": "a", "stars": 2, "author": {"id": ada["id"]}},
                {"body": "b", "stars": 3, "author": {"id": ada["id"]}},
            ],
        },
    )
    q = await c.storage.create(
        "Post", {"title": "q", "comments": [{"body": "c", "stars": 4, "author": {"id": ada["id"]}}]}
    )
    row = await c.storage.find_one("User", {"id": ada["id"]}, ["comments_n"])
    assert row == {"id": ada["id"], "comments_n": 3}
    assert await c.storage.get_dict("comments_total") == 3
    assert await post_values(c, p["id"], "comments_n") == {"comments_n": 2}

    await c.storage.delete("Post", {"id": p["id"]})

    assert await c.storage.count("Comment") == 1
    assert await c.storage.get_dict("comments_total") == 1
    assert await post_values(c, q["id"], "comments_n") == {"comments_n": 1}
    row = await c.storage.find_one("User", {"id": ada["id"]}, ["comments_n"])
    assert row == {"id": ada["id"], "comments_n": 1}


async def test_cascaded_deletes_decrement_sums(make: MakeController) -> None:
    user = r.Entity(
        "User",
        [
            r.Property("name"),
            r.Property("comments_n", "number", computation=r.Count(property="comments")),
        ],
    )
    post = r.Entity(
        "Post",
        [
            r.Property("title"),
            r.Property("comments_n", "number", computation=r.Count(property="comments")),
        ],
    )
    comment = r.Entity("Comment", [r.Property("body"), r.Property("stars", "number")])
    on_post = r.Relation(post, "comments", comment, "post", "1:n", cascade=True)
    by_user = r.Relation(comment, "author", user, "comments", "n:1")
    user.properties.append(
        r.Property(
            "stars",
            "number",
            computation=r.Summation(property="comments", attribute_query=["stars"]),
        )
    )
    total = r.Dictionary("comments_total", "number", computation=r.Count(record=comment))
    c = await make([user, post, comment], [on_post, by_user], [total])
    ada = await c.storage.create("User", {"name": "ada"})
    p = await c.storage.create(
        "Post",
        {
            "title": "p",
            "comments": [
                {"body": "a", "stars": 2, "author": {"id": ada["id"]}},
                {"body": "b", "stars": 3, "author": {"id": ada["id"]}},
            ],
        },
    )
    q = await c.storage.create(
        "Post", {"title": "q", "comments": [{"body": "c", "stars": 4, "author": {"id": ada["id"]}}]}
    )
    row = await c.storage.find_one("User", {"id": ada["id"]}, ["comments_n", "stars"])
    assert row == {"id": ada["id"], "comments_n": 3, "stars": 9}
    assert await c.storage.get_dict("comments_total") == 3
    assert await post_values(c, p["id"], "comments_n") == {"comments_n": 2}

    await c.storage.delete("Post", {"id": p["id"]})

    assert await c.storage.count("Comment") == 1
    assert await c.storage.get_dict("comments_total") == 1
    assert await post_values(c, q["id"], "comments_n") == {"comments_n": 1}
    row = await c.storage.find_one("User", {"id": ada["id"]}, ["comments_n", "stars"])
    assert row == {"id": ada["id"], "comments_n": 1, "stars": 4}


# -- dictionary form -------------------------------------------------------------------------


def shop_model(
    **dictionaries: r.Computation,
) -> tuple[r.Entity, r.Entity, r.Relation, list[r.Dictionary]]:
    item = r.Entity(
        "Item",
        [
            r.Property("name"),
            r.Property("price", "number"),
            r.Property("qty", "number"),
            r.Property("ok", "boolean"),
            r.Property("note"),
        ],
    )
    order = r.Entity("Order", [r.Property("code")])
    lines = r.Relation(
        order, "items", item, "orders", "n:n", properties=[r.Property("amount", "number")]
    )
    dicts = [r.Dictionary(name, "json", computation=comp) for name, comp in dictionaries.items()]
    return item, order, lines, dicts


async def dict_values(c: r.Controller, *names: str) -> dict[str, Any]:
    return {name: await c.storage.get_dict(name) for name in names}


async def test_dictionary_aggregates_over_an_entity(make: MakeController) -> None:
    item, order, lines, dicts = shop_model()
    ok = lambda i: bool(i["ok"])  # noqa: E731
    dicts = [
        r.Dictionary("count", "number", computation=r.Count(record=item)),
        r.Dictionary(
            "sum", "number", computation=r.Summation(record=item, attribute_query=["price"])
        ),
        r.Dictionary(
            "wsum",
            "number",
            computation=r.WeightedSummation(
                record=item,
                callback=lambda i: (i["qty"], i["price"]),
                attribute_query=["qty", "price"],
            ),
        ),
        r.Dictionary(
            "avg", "number", computation=r.Average(record=item, attribute_query=["price"])
        ),
        r.Dictionary(
            "every",
            "boolean",
            computation=r.Every(record=item, callback=ok, attribute_query=["ok"]),
        ),
        r.Dictionary(
            "every_ne",
            "boolean",
            computation=r.Every(record=item, callback=ok, attribute_query=["ok"], not_empty=True),
        ),
        r.Dictionary(
            "any", "boolean", computation=r.Any(record=item, callback=ok, attribute_query=["ok"])
        ),
    ]
    c = await make([item, order], [lines], dicts)
    names = ("count", "sum", "wsum", "avg", "every", "every_ne", "any")
    assert await dict_values(c, *names) == {
        "count": 0,
        "sum": 0,
        "wsum": 0,
        "avg": 0,
        "every": True,
        "every_ne": False,
        "any": False,
    }

    a = await c.storage.create("Item", {"name": "a", "price": 10, "qty": 2, "ok": True})
    assert await dict_values(c, *names) == {
        "count": 1,
        "sum": 10,
        "wsum": 20,
        "avg": 10,
        "every": True,
        "every_ne": True,
        "any": True,
    }

    b = await c.storage.create("Item", {"name": "b", "price": 30, "qty": 1, "ok": False})
    assert await dict_values(c, *names) == {
        "count": 2,
        "sum": 40,
        "wsum": 50,
        "avg": 20,
        "every": False,
        "every_ne": False,
        "any": True,
    }

    await c.storage.update("Item", {"id": a["id"]}, {"price": 20, "ok": False})
    assert await dict_values(c, *names) == {
        "count": 2,
        "sum": 50,
        "wsum": 70,
        "avg": 25,
        "every": False,
        "every_ne": False,
        "any": False,
    }

    await c.storage.delete("Item", {"id": b["id"]})
    assert await dict_values(c, *names) == {
        "count": 1,
        "sum": 20,
        "wsum": 40,
        "avg": 20,
        "every": False,
        "every_ne": False,
        "any": False,
    }

    await c.storage.delete("Item", {"id": a["id"]})
    assert await dict_values(c, *names) == {
        "count": 0,
        "sum": 0,
        "wsum": 0,
        "avg": 0,
        "every": True,
        "every_ne": False,
        "any": False,
    }


async def test_dictionary_summation_counts_non_numbers_as_zero(make: MakeController) -> None:
    note = r.Entity("Note", [r.Property("v", "json")])
    total = r.Dictionary(
        "total", "number", computation=r.Summation(record=note, attribute_query=["v"])
    )
    c = await make([note], dictionaries=[total])
    for v in [1, "2", None, False, [3], 4.5]:
        await c.storage.create("Note", {"v": v})
    assert await c.storage.get_dict("total") == 5.5


async def test_dictionary_aggregates_over_a_relation(make: MakeController) -> None:
    item, order, lines, _ = shop_model()
    dicts = [
        r.Dictionary("lines", "number", computation=r.Count(record=lines)),
        r.Dictionary(
            "amount", "number", computation=r.Summation(record=lines, attribute_query=["amount"])
        ),
        r.Dictionary(
            "big",
            "number",
            computation=r.Count(
                record=lines, callback=lambda link: link["amount"] > 5, attribute_query=["amount"]
            ),
        ),
    ]
    c = await make([item, order], [lines], dicts)
    i1 = await c.storage.create("Item", {"name": "a"})
    i2 = await c.storage.create("Item", {"name": "b"})
    o = await c.storage.create(
        "Order",
        {
            "code": "o",
            "items": [{"id": i1["id"], "&": {"amount": 3}}, {"id": i2["id"], "&": {"amount": 7}}],
        },
    )
    assert await dict_values(c, "lines", "amount", "big") == {"lines": 2, "amount": 10, "big": 1}

    await c.storage.create(
        lines, {"source": {"id": o["id"]}, "target": {"id": i1["id"]}, "amount": 6}
    )
    assert await dict_values(c, "lines", "amount", "big") == {"lines": 3, "amount": 16, "big": 2}

    await c.storage.update(lines, {"amount": 3}, {"amount": 30})
    assert await dict_values(c, "lines", "amount", "big") == {"lines": 3, "amount": 43, "big": 3}

    # deleting an entity deletes its links: the relation aggregate follows
    await c.storage.delete("Item", {"id": i1["id"]})
    assert await dict_values(c, "lines", "amount", "big") == {"lines": 1, "amount": 7, "big": 1}
    await c.storage.delete("Order", {"id": o["id"]})
    assert await dict_values(c, "lines", "amount", "big") == {"lines": 0, "amount": 0, "big": 0}


async def test_dictionary_callback_reruns_only_for_queried_fields(make: MakeController) -> None:
    item, order, lines, _ = shop_model()
    check = Calls(lambda i: bool(i["ok"]))
    okay = r.Dictionary(
        "okay", "number", computation=r.Count(record=item, callback=check, attribute_query=["ok"])
    )
    c = await make([item, order], [lines], [okay])
    a = await c.storage.create("Item", {"name": "a", "ok": False})
    assert check.count == 1
    assert await c.storage.get_dict("okay") == 0

    await c.storage.update("Item", {"id": a["id"]}, {"name": "b", "price": 3})
    assert check.count == 1
    await c.storage.update("Item", {"id": a["id"]}, {"ok": False})
    assert check.count == 1
    await c.storage.update("Item", {"id": a["id"]}, {"ok": True})
    assert check.count > 1
    assert await c.storage.get_dict("okay") == 1
    assert check.args[-1] == {"id": a["id"], "ok": True}


async def test_aggregate_state_is_hidden_from_star_queries(make: MakeController) -> None:
    user, post, likes = likes_model(total=r.Summation(property="likes", attribute_query=["karma"]))
    c = await make([user, post], [likes])
    p = await c.storage.create("Post", {"title": "x"})
    rows = await c.storage.find("Post", None, ["*"])
    assert rows == [{"id": p["id"], "title": "x", "total": 0}]


# -- declaration errors ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "build",
    [
        lambda: r.Count(property="likes", callback=lambda u: True),
        lambda: r.Every(property="likes", callback=lambda u: True),
        lambda: r.Any(property="likes", callback=lambda u: True),
        lambda: r.WeightedSummation(property="likes", callback=lambda u: (1, 1)),
        lambda: r.Every(property="likes", attribute_query=["ok"]),
        lambda: r.Summation(property="likes"),
        lambda: r.Average(property="likes"),
        lambda: r.Count(),
        lambda: r.Count(record=r.Entity("X"), property="likes"),
        lambda: r.Count(property="likes", attribute_query="ok"),
    ],
)
def test_aggregate_declaration_errors(build: Any) -> None:
    with pytest.raises(r.ModelError):
        build()


@pytest.mark.parametrize(
    "aggregate",
    [
        lambda: r.Summation(property="likes", attribute_query=["karma", "name"]),
        lambda: r.Count(property="nope"),
        lambda: r.Count(property="likes", callback=lambda u: True, attribute_query=["missing"]),
        lambda: r.Count(
            property="likes", callback=lambda u: True, attribute_query=[("liked", ["title"])]
        ),
    ],
)
def test_aggregate_errors_at_controller_construction(aggregate: Any) -> None:
    user, post, likes = likes_model(bad=aggregate())
    with pytest.raises((r.ModelError, r.SetupError)):
        r.Controller(SQLiteStorage(":memory:"), [user, post], [likes])


async def test_symmetric_relation_summation_of_a_related_field(make: MakeController) -> None:
    user = r.Entity("User", [r.Property("name"), r.Property("age", "number")])
    friends = r.Relation(user, "friends", user, "friends", "n:n")
    user.properties.append(
        r.Property(
            "friends_age",
            "number",
            computation=r.Summation(property="friends", attribute_query=["age"]),
        )
    )
    c = await make([user], [friends])
    a = await c.storage.create("User", {"name": "a", "age": 10})
    await c.storage.create("User", {"name": "b", "age": 20, "friends": [{"id": a["id"]}]})
    d = await c.storage.create("User", {"name": "d", "age": 40, "friends": [{"id": a["id"]}]})

    async def sums() -> dict[str, int]:
        rows = await c.storage.find("User", None, ["name", "friends_age"])
        return {row["name"]: row["friends_age"] for row in rows}

    assert await sums() == {"a": 60, "b": 10, "d": 10}
    await c.storage.update("User", {"id": a["id"]}, {"age": 50})
    assert await sums() == {"a": 60, "b": 50, "d": 50}
    await c.storage.update("User", {"id": d["id"]}, {"age": 1})
    assert await sums() == {"a": 21, "b": 50, "d": 50}
    await c.storage.delete(friends, {"source": {"id": d["id"]}})
    assert await sums() == {"a": 20, "b": 50, "d": 0}


async def test_unlinking_through_an_update_decrements(make: MakeController) -> None:
    user = r.Entity(
        "User",
        [
            r.Property("name"),
            r.Property("posts_n", "number", computation=r.Count(property="posts")),
        ],
    )
    post = r.Entity("Post", [r.Property("title"), r.Property("score", "number")])
    user.properties.append(
        r.Property(
            "score", "number", computation=r.Summation(property="posts", attribute_query=["score"])
        )
    )
    authors = r.Relation(user, "posts", post, "author", "1:n")
    c = await make([user, post], [authors])
    u = await c.storage.create("User", {"name": "u"})
    p = await c.storage.create("Post", {"title": "p", "score": 3, "author": {"id": u["id"]}})
    await c.storage.create("Post", {"title": "q", "score": 4, "author": {"id": u["id"]}})
    row = await c.storage.find_one("User", {"id": u["id"]}, ["posts_n", "score"])
    assert row == {"id": u["id"], "posts_n": 2, "score": 7}

    await c.storage.update("Post", {"id": p["id"]}, {"author": None})

    row = await c.storage.find_one("User", {"id": u["id"]}, ["posts_n", "score"])
    assert row == {"id": u["id"], "posts_n": 1, "score": 4}


async def test_dictionary_average_weighted_every_any_over_a_relation(make: MakeController) -> None:
    item, order, lines, _ = shop_model()
    big = lambda link: (link["amount"] or 0) > 5  # noqa: E731
    dicts = [
        r.Dictionary(
            "avg", "number", computation=r.Average(record=lines, attribute_query=["amount"])
        ),
        r.Dictionary(
            "wsum",
            "number",
            computation=r.WeightedSummation(
                record=lines, callback=lambda link: (2, link["amount"]), attribute_query=["amount"]
            ),
        ),
        r.Dictionary(
            "every",
            "boolean",
            computation=r.Every(record=lines, callback=big, attribute_query=["amount"]),
        ),
        r.Dictionary(
            "any",
            "boolean",
            computation=r.Any(record=lines, callback=big, attribute_query=["amount"]),
        ),
    ]
    c = await make([item, order], [lines], dicts)
    names = ("avg", "wsum", "every", "any")
    assert await dict_values(c, *names) == {"avg": 0, "wsum": 0, "every": True, "any": False}

    i1 = await c.storage.create("Item", {"name": "a"})
    i2 = await c.storage.create("Item", {"name": "b"})
    o = await c.storage.create(
        "Order",
        {
            "code": "o",
            "items": [{"id": i1["id"], "&": {"amount": 4}}, {"id": i2["id"], "&": {"amount": 8}}],
        },
    )
    assert await dict_values(c, *names) == {"avg": 6, "wsum": 24, "every": False, "any": True}

    await c.storage.update(lines, {"amount": 4}, {"amount": 6})
    assert await dict_values(c, *names) == {"avg": 7, "wsum": 28, "every": True, "any": True}

    await c.storage.delete("Order", {"id": o["id"]})
    assert await dict_values(c, *names) == {"avg": 0, "wsum": 0, "every": True, "any": False}
