"""AppTest: "Why?" on the Try page (a heatmap over an image, marked words of a text) and the Results page's
heatmaps and word marks for the examples it gets wrong."""
from __future__ import annotations

from apphelpers import no_exceptions, open_app, png_bytes, shape_image, train_run

from app.explain_ui import highlighted, words
from transfer_core.explain import Explanation


def test_why_shows_the_heatmap_of_the_predicted_class_and_of_another(app_env, shapes_folder):
    run_id = train_run(app_env / "runs", str(shapes_folder), "tiny_cnn", **{"model.image_size": 32})
    at = open_app("5_try")
    at.file_uploader(key="try_image").set_value(("new.png", png_bytes(shape_image("square", 999)), "image/png")).run()
    images_before = len(at.image)
    at.toggle(key="why_on").set_value(True).run()
    no_exceptions(at)
    assert len(at.image) == images_before + 2            # what the model sees, and the heatmap over it
    assert any("Grad-CAM" in c.value for c in at.caption)
    at.selectbox(key=f"why_class_{run_id}").set_value("triangle").run()
    no_exceptions(at)
    assert len(at.image) == images_before + 2


def test_why_marks_the_words_of_a_text(app_env, topics_csv):
    train_run(app_env / "runs", str(topics_csv), "tiny_bert", **{"model.max_length": 32})
    at = open_app("5_try")
    at.text_area(key="try_text").input("the team scored a late goal to win the match").run()
    at.button(key="try_classify").click().run()
    at.toggle(key="why_on").set_value(True).run()
    no_exceptions(at)
    assert any("-background[" in m.value for m in at.markdown)
    assert any("Integrated gradients" in c.value for c in at.caption)


def test_results_show_heatmaps_and_words_for_the_examples_it_gets_wrong(app_env, shapes_folder, topics_csv):
    train_run(app_env / "runs", str(shapes_folder), "tiny_cnn", **{"model.image_size": 32, "train.epochs": 1})
    at = open_app("4_results")
    at.radio(key="gallery_kind").set_value("highest loss").run()
    shown = len(at.image)
    at.toggle(key="gallery_heatmaps").set_value(True).run()
    no_exceptions(at)
    assert len(at.image) == shown and shown >= 1          # each example drawn with its heatmap instead
    train_run(app_env / "runs", str(topics_csv), "tiny_bert", **{"model.max_length": 32, "train.epochs": 1})
    at = open_app("4_results")
    at.radio(key="gallery_kind").set_value("highest loss").run()
    at.toggle(key="gallery_words").set_value(True).run()
    no_exceptions(at)
    assert sum(m.value.startswith("true **") for m in at.markdown) >= 1


def test_word_pieces_join_and_marks_follow_the_scores():
    assert words([("play", 0.2), ("##ing", 0.3), ("ball", -0.1)]) == [("playing", 0.5), ("ball", -0.1)]
    assert words([("▁New", 0.1), ("▁York", 0.4)]) == [("New", 0.1), ("York", 0.4)]
    marked = highlighted(Explanation("a", 0.9, "a", 0.9, tokens=[("goal", 1.0), ("the", 0.05), ("[x]", -0.4)]))
    assert marked == ":green-background[**goal**] the :red-background[\\[x\\]]"


def test_results_draw_the_embedding_map_before_and_after(app_env, shapes_folder):
    train_run(app_env / "runs", str(shapes_folder), "tiny_cnn", **{"model.image_size": 32})
    at = open_app("4_results")
    charts = len(at.get("plotly_chart"))
    at.toggle(key="embed_on").set_value(True).run()
    no_exceptions(at)
    assert len(at.get("plotly_chart")) == charts + 1
    assert any("misclassified (crosses)" in c.value for c in at.caption)
    at.radio(key="embed_method").set_value("tsne").run()
    no_exceptions(at)
    assert len(at.get("plotly_chart")) == charts + 1


def test_the_coach_speaks_beside_the_curves_of_a_run_made_to_overfit(app_env, digits_folder):
    from app.state import CURRENT_RUN
    run_id = train_run(app_env / "runs", str(digits_folder), "tiny_cnn",
                       **{"model.image_size": 16, "model.pretrained": False, "optim.lr": 0.05, "freeze.preset": "full",
                          "train.epochs": 15, "train.batch_size": 8, "data.val_fraction": 0.5})
    at = open_app("3_train", session={CURRENT_RUN: run_id})
    no_exceptions(at)
    coached = [i.value for i in at.info if "What to try:" in i.value]
    assert any("Validation loss has risen since epoch" in text for text in coached), coached


def test_the_home_page_offers_a_learning_path_of_five_steps(app_env):
    at = open_app()
    no_exceptions(at)
    assert "A learning path for a class" in [s.value for s in at.subheader]
    steps = [e.label for e in at.expander if e.label[:2] in {f"{i}." for i in range(1, 6)}]
    assert len(steps) == 5 and steps[0].startswith("1. What are pretrained features")
