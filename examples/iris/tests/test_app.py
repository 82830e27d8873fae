import json

import app

SETOSA = [5.1, 3.5, 1.4, 0.2]
VERSICOLOR = [6.0, 2.9, 4.5, 1.5]
VIRGINICA = [6.9, 3.1, 5.8, 2.3]


def test_predicts_each_class():
    assert app.handler({"features": SETOSA})["class"] == "setosa"
    assert app.handler({"features": VERSICOLOR})["class"] == "versicolor"
    assert app.handler({"features": VIRGINICA})["class"] == "virginica"


def test_probabilities_sum_to_one():
    out = app.handler({"features": VIRGINICA})
    assert out["statusCode"] == 200
    assert abs(sum(out["probabilities"].values()) - 1) < 1e-5
    assert max(out["probabilities"], key=out["probabilities"].get) == out["class"]


def test_named_features_and_http_body():
    named = dict(zip(["sepal_length", "sepal_width", "petal_length", "petal_width"], SETOSA))
    out = app.handler({"body": json.dumps({"features": named})})
    assert out["class"] == "setosa"


def test_bad_input_is_400():
    assert app.handler({"features": [1, 2]})["statusCode"] == 400
    assert app.handler({"features": ["a", 1, 2, 3]})["statusCode"] == 400
    assert app.handler({"body": "{not json"})["statusCode"] == 400


def test_batch():
    out = app.batch_handler({"rows": [SETOSA, VIRGINICA]})
    assert out["count"] == 2
    assert [p["class"] for p in out["predictions"]] == ["setosa", "virginica"]
    assert app.batch_handler({"rows": "x"})["statusCode"] == 400
