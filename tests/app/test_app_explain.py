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
