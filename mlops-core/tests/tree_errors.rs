//! A tree model file that is not what it claims is a named error when it is read, never a
//! panic and never a wrong number later.

use mlops_core::model::trees::TreeEnsemble;
use mlops_core::model::{predictor, ModelArtifact, ModelKind};
use mlops_core::Error;

const LGB: &str = "tree\nversion=v4\nnum_class=1\nnum_tree_per_iteration=1\nlabel_index=0\n\
max_feature_idx=1\nobjective=binary sigmoid:1\nfeature_names=a b\n\
feature_infos=[-1:1] [-1:1]\n\nTree=0\nnum_leaves=3\nnum_cat=0\nsplit_feature=0 1\n\
threshold=0.25 -0.5\ndecision_type=10 0\nleft_child=1 -1\nright_child=-2 -3\n\
leaf_value=0.5 -0.25 1.5\nshrinkage=1\n\n\nend of trees\n\nfeature_importances:\na=1\n";

fn xgb(objective: &str, trees: &str) -> String {
    format!(
        r#"{{"learner": {{"attributes": {{}}, "feature_names": ["a", "b"], "feature_types": ["float", "float"],
        "gradient_booster": {{"model": {{"gbtree_model_param": {{"num_parallel_tree": "1", "num_trees": "1"}},
        "iteration_indptr": [0, 1], "tree_info": [0], "trees": [{trees}]}}, "name": "gbtree"}},
        "learner_model_param": {{"base_score": "[5E-1]", "boost_from_average": "1", "num_class": "0",
        "num_feature": "2", "num_target": "1"}}, "objective": {{"name": "{objective}"}}}}, "version": [3, 2, 0]}}"#
    )
}

const TREE: &str = r#"{"base_weights": [0, 0.5, -0.5], "categories": [], "categories_nodes": [],
    "categories_segments": [], "categories_sizes": [], "default_left": [1, 0, 0], "id": 0,
    "left_children": [1, -1, -1], "right_children": [2, -1, -1], "split_indices": [1, 0, 0],
    "split_conditions": [0.0, 0.5, -0.5], "split_type": [0, 0, 0],
    "tree_param": {"num_deleted": "0", "num_feature": "2", "num_nodes": "3", "size_leaf_vector": "1"}}"#;

fn message(e: Error) -> String {
    e.to_string()
}

#[test]
fn the_hand_written_models_score_by_hand() {
    let a = ModelArtifact::from_model_file(ModelKind::Lightgbm, LGB.as_bytes()).unwrap();
    let p = predictor(&a).unwrap();
    let above = 0.25_f32.next_up();
    let x = ndarray::array![
        [0.25_f32, -0.5],
        [0.25, -0.4],
        [above, -0.6],
        [f32::NAN, -0.6],
        [0.0, f32::NAN]
    ];
    let got = p.predict_proba(x.view()).unwrap();
    let s = |v: f64| (1.0 / (1.0 + (-v).exp())) as f32;
    // a <= 0.25 goes to node 1, else leaf 1; at node 1, b <= -0.5 is leaf 0, else leaf 2.
    // NaN on a (missing type NaN, default left): node 1; NaN on b (missing type none): read
    // as 0, not <= -0.5: leaf 2.
    assert_eq!(got.to_vec(), [s(0.5), s(1.5), s(-0.25), s(0.5), s(1.5)]);

    let a =
        ModelArtifact::from_model_file(ModelKind::Xgboost, xgb("binary:logistic", TREE).as_bytes())
            .unwrap();
    let p = predictor(&a).unwrap();
    let x = ndarray::array![
        [9.0_f32, -0.1],
        [9.0, 0.0],
        [9.0, f32::NAN],
        [9.0, f32::INFINITY]
    ];
    let got = p.predict_proba(x.view()).unwrap();
    let s = |v: f32| 1.0 / (1.0 + (-v).exp());
    // b < 0 left (0.5); 0 is not < 0: right (-0.5); NaN: default left; inf: right.
    assert_eq!(got.to_vec(), [s(0.5), s(-0.5), s(0.5), s(-0.5)]);
    assert_eq!(a.spec().input_features, ["a", "b"]);
}

#[test]
fn truncated_files_are_errors_at_every_length() {
    let x = xgb("binary:logistic", TREE);
    for cut in (0..x.len()).step_by(7) {
        assert!(
            TreeEnsemble::from_xgboost_json(&x.as_bytes()[..cut]).is_err(),
            "xgboost cut at {cut}"
        );
    }
    for cut in 0..LGB.find("end of trees").unwrap() {
        let e = TreeEnsemble::from_lightgbm_text(&LGB.as_bytes()[..cut]);
        assert!(e.is_err(), "lightgbm cut at {cut}");
    }
    let e = message(TreeEnsemble::from_lightgbm_text(&LGB.as_bytes()[..200]).unwrap_err());
    assert!(e.contains("end of trees"), "{e}");
}

#[test]
fn a_file_of_the_wrong_kind_is_refused_naming_the_kind() {
    let e =
        message(ModelArtifact::from_model_file(ModelKind::Xgboost, LGB.as_bytes()).unwrap_err());
    assert!(e.contains("XGBoost"), "{e}");
    let e = message(
        ModelArtifact::from_model_file(
            ModelKind::Lightgbm,
            xgb("binary:logistic", TREE).as_bytes(),
        )
        .unwrap_err(),
    );
    assert!(e.contains("not a LightGBM text model"), "{e}");
    assert!(ModelArtifact::from_model_file(ModelKind::Mlp, LGB.as_bytes()).is_err());
    assert_eq!(
        ModelKind::guess("m.txt", LGB.as_bytes()).unwrap(),
        ModelKind::Lightgbm
    );
    assert_eq!(
        ModelKind::guess("m", xgb("binary:logistic", TREE).as_bytes()).unwrap(),
        ModelKind::Xgboost
    );
    assert_eq!(
        ModelKind::guess("model.onnx", b"\x08\x07\x12\x07pytorch").unwrap(),
        ModelKind::Onnx
    );
    let e = message(ModelKind::guess("notes.csv", b"a,b\n1,2\n").unwrap_err());
    assert!(e.contains("notes.csv") && e.contains("--kind"), "{e}");
    // UBJSON, xgboost's binary format: named, with the way out.
    let e = message(
        TreeEnsemble::from_xgboost_json(b"{L\x00\x00\x00\x00\x00\x00\x00\x07learner").unwrap_err(),
    );
    assert!(e.contains("UBJSON") && e.contains(".json"), "{e}");
}

#[test]
fn objectives_other_than_a_binary_probability_are_refused() {
    for objective in [
        "reg:squarederror",
        "binary:logitraw",
        "multi:softprob",
        "rank:ndcg",
    ] {
        let e =
            message(TreeEnsemble::from_xgboost_json(xgb(objective, TREE).as_bytes()).unwrap_err());
        assert!(
            e.contains(objective) && e.contains("binary:logistic"),
            "{e}"
        );
    }
    for objective in ["regression", "multiclass num_class:3", "lambdarank"] {
        let text = LGB.replace(
            "objective=binary sigmoid:1",
            &format!("objective={objective}"),
        );
        let e = message(TreeEnsemble::from_lightgbm_text(text.as_bytes()).unwrap_err());
        assert!(e.contains(objective), "{e}");
    }
    let text = LGB.replace("num_class=1", "num_class=3");
    assert!(
        message(TreeEnsemble::from_lightgbm_text(text.as_bytes()).unwrap_err())
            .contains("binary model")
    );
    let dart = xgb("binary:logistic", TREE).replace("\"name\": \"gbtree\"", "\"name\": \"dart\"");
    assert!(
        message(TreeEnsemble::from_xgboost_json(dart.as_bytes()).unwrap_err()).contains("dart")
    );
    let linear = LGB
        .replace("is_linear", "x")
        .replace("shrinkage=1", "is_linear=1\nshrinkage=1");
    assert!(
        message(TreeEnsemble::from_lightgbm_text(linear.as_bytes()).unwrap_err())
            .contains("linear")
    );
}

#[test]
fn a_split_on_a_feature_the_model_lacks_is_an_error_at_reading() {
    let text = LGB.replace("split_feature=0 1", "split_feature=0 5");
    let e = message(TreeEnsemble::from_lightgbm_text(text.as_bytes()).unwrap_err());
    assert!(e.contains("feature 5") && e.contains("2 features"), "{e}");
    let x = xgb(
        "binary:logistic",
        &TREE.replace(
            "\"split_indices\": [1, 0, 0]",
            "\"split_indices\": [7, 0, 0]",
        ),
    );
    let e = message(TreeEnsemble::from_xgboost_json(x.as_bytes()).unwrap_err());
    assert!(e.contains("feature 7"), "{e}");
    let x = xgb(
        "binary:logistic",
        &TREE.replace(
            "\"split_indices\": [1, 0, 0]",
            "\"split_indices\": [-1, 0, 0]",
        ),
    );
    assert!(TreeEnsemble::from_xgboost_json(x.as_bytes()).is_err());
}

#[test]
fn cycles_shared_nodes_and_bad_indices_are_errors() {
    // Node 1 points back at node 0 (a cycle): refused rather than looping.
    let text = LGB.replace("left_child=1 -1", "left_child=1 0");
    let e = message(TreeEnsemble::from_lightgbm_text(text.as_bytes()).unwrap_err());
    assert!(e.contains("reached twice"), "{e}");
    let text = LGB.replace("right_child=-2 -3", "right_child=-2 -9");
    assert!(
        message(TreeEnsemble::from_lightgbm_text(text.as_bytes()).unwrap_err()).contains("leaf 8")
    );
    let text = LGB.replace("left_child=1 -1", "left_child=4 -1");
    assert!(TreeEnsemble::from_lightgbm_text(text.as_bytes()).is_err());
    let x = xgb(
        "binary:logistic",
        &TREE.replace(
            "\"left_children\": [1, -1, -1]",
            "\"left_children\": [0, -1, -1]",
        ),
    );
    assert!(
        message(TreeEnsemble::from_xgboost_json(x.as_bytes()).unwrap_err())
            .contains("reached twice")
    );
    let x = xgb(
        "binary:logistic",
        &TREE.replace(
            "\"right_children\": [2, -1, -1]",
            "\"right_children\": [3, -1, -1]",
        ),
    );
    assert!(TreeEnsemble::from_xgboost_json(x.as_bytes()).is_err());
    let x = xgb(
        "binary:logistic",
        &TREE.replace("\"num_nodes\": \"3\"", "\"num_nodes\": \"4\""),
    );
    assert!(
        message(TreeEnsemble::from_xgboost_json(x.as_bytes()).unwrap_err()).contains("num_nodes")
    );
    let text = LGB.replace("leaf_value=0.5 -0.25 1.5", "leaf_value=0.5 nan 1.5");
    assert!(
        message(TreeEnsemble::from_lightgbm_text(text.as_bytes()).unwrap_err()).contains("finite")
    );
    let text = LGB.replace("leaf_value=0.5 -0.25 1.5", "leaf_value=0.5 -0.25");
    assert!(
        message(TreeEnsemble::from_lightgbm_text(text.as_bytes()).unwrap_err())
            .contains("leaf_value")
    );
    let x = xgb("binary:logistic", TREE).replace("[5E-1]", "[1]");
    assert!(
        message(TreeEnsemble::from_xgboost_json(x.as_bytes()).unwrap_err()).contains("base_score")
    );
    let x = xgb("binary:logistic", "");
    assert!(
        message(TreeEnsemble::from_xgboost_json(x.as_bytes()).unwrap_err()).contains("no trees")
    );
}

#[test]
fn categorical_sets_out_of_range_are_errors() {
    let text = LGB
        .replace("num_cat=0", "num_cat=1")
        .replace("decision_type=10 0", "decision_type=1 0")
        .replace("threshold=0.25 -0.5", "threshold=0 -0.5")
        .replace(
            "shrinkage=1",
            "cat_boundaries=0 3\ncat_threshold=1\nshrinkage=1",
        );
    let e = message(TreeEnsemble::from_lightgbm_text(text.as_bytes()).unwrap_err());
    assert!(e.contains("cat_boundaries"), "{e}");
    let ok = text.replace("cat_boundaries=0 3", "cat_boundaries=0 1");
    let trees = TreeEnsemble::from_lightgbm_text(ok.as_bytes()).unwrap();
    let mut p = [0.0_f32; 4];
    // Set {0}: 0 and -0.5 (truncated to 0) go left; 1, NaN and -1 go right.
    trees
        .predict_proba_into(
            ndarray::array![[0.0_f32, -1.0], [-0.5, -1.0], [1.0, -1.0], [f32::NAN, -1.0]].view(),
            &mut p,
        )
        .unwrap();
    assert_eq!(p[0], p[1]);
    assert_eq!(p[2], p[3]);
    assert_ne!(p[0], p[2]);
    let bad = text
        .replace("cat_boundaries=0 3", "cat_boundaries=0 1")
        .replace("threshold=0 -0.5", "threshold=4 -0.5");
    assert!(TreeEnsemble::from_lightgbm_text(bad.as_bytes()).is_err());
    let x = xgb(
        "binary:logistic",
        &TREE
            .replace("\"split_type\": [0, 0, 0]", "\"split_type\": [1, 0, 0]")
            .replace("\"categories\": []", "\"categories\": [2, 99999999]")
            .replace("\"categories_nodes\": []", "\"categories_nodes\": [0]")
            .replace(
                "\"categories_segments\": []",
                "\"categories_segments\": [0]",
            )
            .replace("\"categories_sizes\": []", "\"categories_sizes\": [2]"),
    );
    let e = message(TreeEnsemble::from_xgboost_json(x.as_bytes()).unwrap_err());
    assert!(e.contains("99999999"), "{e}");
    let fine = x.replace("99999999", "40");
    let trees = TreeEnsemble::from_xgboost_json(fine.as_bytes()).unwrap();
    let mut p = [0.0_f32; 5];
    // XGBoost: categories {2, 40} go right; 3, -1 and 1e9 go left; NaN default left.
    trees
        .predict_proba_into(
            ndarray::array![
                [0.0_f32, 2.0],
                [0.0, 40.5],
                [0.0, 3.0],
                [0.0, -1.0],
                [0.0, 1e9]
            ]
            .view(),
            &mut p,
        )
        .unwrap();
    assert_eq!(p[0], p[1]);
    assert_eq!(p[2], p[3]);
    assert_eq!(p[3], p[4]);
    assert_ne!(p[0], p[2]);
}

#[test]
fn the_spec_and_the_file_must_agree_and_names_are_checked() {
    let a = ModelArtifact::from_model_file(ModelKind::Lightgbm, LGB.as_bytes()).unwrap();
    assert!(a.clone().with_input_features(vec!["x".into()]).is_err());
    let e = message(
        a.clone()
            .with_input_features(vec!["x".into(), "x".into()])
            .unwrap_err(),
    );
    assert!(e.contains("input_features[1]"), "{e}");
    let renamed = a
        .clone()
        .with_input_features(vec!["amount".into(), "hour".into()])
        .unwrap();
    assert_eq!(
        predictor(&renamed).unwrap().feature_names(),
        ["amount", "hour"]
    );
    // Round trip through a folder and through parts.
    let dir = tempfile::tempdir().unwrap();
    renamed.save(dir.path()).unwrap();
    assert!(dir.path().join("model.lightgbm.txt").exists());
    assert_eq!(ModelArtifact::load(dir.path()).unwrap(), renamed);
    // A spec naming three inputs for a file that reads two.
    let spec = renamed
        .spec_json()
        .unwrap()
        .replace("\"hour\"", "\"hour\", \"day\"");
    let e = message(ModelArtifact::from_parts(spec.as_bytes(), LGB.as_bytes()).unwrap_err());
    assert!(e.contains("3 features") && e.contains("reads 2"), "{e}");
    // A tree spec with layers, and an MLP's weights asked of a tree model.
    let layered = renamed.spec_json().unwrap().replace(
        "\"layers\": []",
        "\"layers\": [{\"units\": 1, \"activation\": \"sigmoid\"}]",
    );
    assert!(ModelArtifact::from_parts(layered.as_bytes(), LGB.as_bytes()).is_err());
    assert!(renamed.weights_to_safetensors().is_err());
    assert!(mlops_core::model::MlpModel::new(&renamed).is_err());
    // The wrong width at scoring is an error, not a panic.
    let p = predictor(&renamed).unwrap();
    assert!(p
        .predict_proba(ndarray::Array2::<f32>::zeros((2, 3)).view())
        .is_err());
    assert_eq!(
        p.predict_proba(ndarray::Array2::<f32>::zeros((0, 2)).view())
            .unwrap()
            .len(),
        0
    );
}

#[test]
fn corrupted_bytes_never_panic() {
    // Every single-byte change of both files: an error or a model, never a panic.
    let x = xgb("binary:logistic", TREE);
    for (file, kind) in [
        (LGB.to_string(), ModelKind::Lightgbm),
        (x, ModelKind::Xgboost),
    ] {
        let bytes = file.as_bytes();
        for i in 0..bytes.len() {
            for b in [b'0', b'9', b'-', b' ', b'\n', b'[', 0xff] {
                let mut m = bytes.to_vec();
                m[i] = b;
                if let Ok(a) = ModelArtifact::from_model_file(kind, &m) {
                    let p = predictor(&a).unwrap();
                    let n = p.n_features();
                    let rows = ndarray::Array2::from_shape_fn((3, n), |(r, c)| {
                        (r as f32 - 1.0) * (c as f32 + 0.5)
                    });
                    p.predict_proba(rows.view()).unwrap();
                }
            }
        }
    }
}

/// One LightGBM stump on `a` with `threshold` and `decision_type`, leaves -1 (left) and 2.
fn stump(threshold: &str, decision_type: u8) -> String {
    LGB.replace("num_leaves=3", "num_leaves=2")
        .replace("split_feature=0 1", "split_feature=0")
        .replace("threshold=0.25 -0.5", &format!("threshold={threshold}"))
        .replace(
            "decision_type=10 0",
            &format!("decision_type={decision_type}"),
        )
        .replace("left_child=1 -1", "left_child=-1")
        .replace("right_child=-2 -3", "right_child=-2")
        .replace("leaf_value=0.5 -0.25 1.5", "leaf_value=-1 2")
}

fn score(text: &str, a: f32) -> f32 {
    let trees = TreeEnsemble::from_lightgbm_text(text.as_bytes()).unwrap();
    let mut p = [0.0_f32];
    trees
        .predict_proba_into(ndarray::array![[a, 0.0_f32]].view(), &mut p)
        .unwrap();
    p[0]
}

#[test]
fn lightgbm_reads_inputs_within_its_zero_threshold_as_zero() {
    let (left, right) = (score(&stump("0", 0), -1.0), score(&stump("0", 0), 1.0));
    // LightGBM's own "negative against zero" split: -1e-35 (f32) is read as 0, so right.
    let negative = stump("-1.0000000180025095e-35", 0);
    assert_eq!(score(&negative, -1e-35), right);
    assert_eq!(score(&negative, -1.1e-35), left);
    // 5e-36 against a threshold of 1e-36: read as 0, so left.
    assert_eq!(score(&stump("1e-36", 0), 5e-36), left);
    // Zero as missing (default right): 1e-35 and -0.0 are zero, so right whatever 0.5 says.
    let zero = stump("0.5", 4);
    assert_eq!(score(&zero, 1e-35), right);
    assert_eq!(score(&zero, -0.0), right);
    assert_eq!(score(&zero, 0.25), left);
}

#[test]
fn lightgbm_category_codes_past_two_to_the_24_are_read() {
    let code = 20_000_002_u32;
    let mut words = vec!["0"; (code / 32) as usize + 1];
    let last = (1u32 << (code % 32)).to_string();
    *words.last_mut().unwrap() = &last;
    let text = stump("0", 1).replace("num_cat=0", "num_cat=1").replace(
        "shrinkage=1",
        &format!(
            "cat_boundaries=0 {}\ncat_threshold={}\nshrinkage=1",
            words.len(),
            words.join(" ")
        ),
    );
    let (inside, outside) = (score(&text, code as f32), score(&text, 20_000_004.0));
    assert_ne!(inside, outside);
    assert_eq!(outside, score(&text, 3e9), "past i32::MAX: in no set");
}

#[test]
fn counts_read_from_a_file_are_bounded_before_anything_is_allocated() {
    let e = message(
        TreeEnsemble::from_lightgbm_text(
            stump("0", 0)
                .replace("num_cat=0", "num_cat=4000000000000")
                .as_bytes(),
        )
        .unwrap_err(),
    );
    assert!(e.contains("num_cat"), "{e}");
    let text = stump("0", 0).replace("num_cat=0", "num_cat=18446744073709551615");
    assert!(TreeEnsemble::from_lightgbm_text(text.as_bytes()).is_err());
    let text = LGB
        .replace("max_feature_idx=1", "max_feature_idx=1099511627776")
        .replace("feature_names=a b\n", "");
    let e = message(TreeEnsemble::from_lightgbm_text(text.as_bytes()).unwrap_err());
    assert!(e.contains("feature count"), "{e}");
    let x = xgb("binary:logistic", TREE).replace(
        "\"num_feature\": \"2\"",
        "\"num_feature\": \"1099511627776\"",
    );
    let e = message(TreeEnsemble::from_xgboost_json(x.as_bytes()).unwrap_err());
    assert!(e.contains("feature count"), "{e}");
    // Category segments longer in all than the category list (quadratic work), or naming a
    // node that is not a categorical split, or one twice.
    let k = 2000;
    let many = TREE
        .replace("\"split_type\": [0, 0, 0]", "\"split_type\": [1, 0, 0]")
        .replace(
            "\"categories\": []",
            &format!("\"categories\": {:?}", vec![0; k]),
        )
        .replace(
            "\"categories_nodes\": []",
            &format!("\"categories_nodes\": {:?}", vec![0; k]),
        )
        .replace(
            "\"categories_segments\": []",
            &format!("\"categories_segments\": {:?}", vec![0; k]),
        )
        .replace(
            "\"categories_sizes\": []",
            &format!("\"categories_sizes\": {:?}", vec![k; k]),
        );
    let e = message(
        TreeEnsemble::from_xgboost_json(xgb("binary:logistic", &many).as_bytes()).unwrap_err(),
    );
    assert!(e.contains("categories_sizes"), "{e}");
    let twice = TREE
        .replace("\"split_type\": [0, 0, 0]", "\"split_type\": [1, 0, 0]")
        .replace("\"categories\": []", "\"categories\": [1, 2]")
        .replace("\"categories_nodes\": []", "\"categories_nodes\": [0, 0]")
        .replace(
            "\"categories_segments\": []",
            "\"categories_segments\": [0, 1]",
        )
        .replace("\"categories_sizes\": []", "\"categories_sizes\": [1, 1]");
    let e = message(
        TreeEnsemble::from_xgboost_json(xgb("binary:logistic", &twice).as_bytes()).unwrap_err(),
    );
    assert!(e.contains("listed once"), "{e}");
    let numeric = twice.replace("\"split_type\": [1, 0, 0]", "\"split_type\": [0, 0, 0]");
    assert!(TreeEnsemble::from_xgboost_json(xgb("binary:logistic", &numeric).as_bytes()).is_err());
}

#[test]
fn lightgbm_names_keep_tabs_and_other_spaces() {
    let text = LGB.replace("feature_names=a b", "feature_names=a\tx b\u{a0}y");
    let trees = TreeEnsemble::from_lightgbm_text(text.as_bytes()).unwrap();
    assert_eq!(trees.feature_names(), ["a\tx", "b\u{a0}y"]);
}

#[test]
fn an_early_stopped_xgboost_model_says_so_in_its_spec() {
    let x = xgb("binary:logistic", TREE).replace(
        "\"attributes\": {}",
        "\"attributes\": {\"best_iteration\": \"0\"}",
    );
    let a = ModelArtifact::from_model_file(ModelKind::Xgboost, x.as_bytes()).unwrap();
    assert_eq!(a.trees().unwrap().best_iteration(), Some(0));
    assert_eq!(a.spec().metadata["xgboost.best_iteration"], "0");
}
