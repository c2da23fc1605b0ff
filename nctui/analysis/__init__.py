"""Analysis of recorded runs in plain Python (records in, judgements out; never torch or textual).

`verdicts` judges the four claims of Xu et al. (2023) on one run; the Overview pane, `nctui
verify` and `nctui plot --figure claims` all call it, so they always agree.
"""
