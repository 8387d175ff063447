"""Source ids of POLICY.md ("Sources") cited by each rule."""

D0 = ("S3", "S5")
D1 = ("S3", "S5", "S6")
D1_LOWEST = ("S5", "S6")
D2 = ("S3", "S5")
D2_WORKUP = ("S1", "S2", "S3")
D3 = ("S3", "S7")
D4_OPTIONS = ("S1", "S4", "S8")
D4_BY_TRIGGER = {
    "motor_worsening": ("S1", "S2", "S3"),
    "two_grade_rise": ("S2", "S3"),
    "grade_4": ("S3",),
    "red_flag_worsening": ("S3",),
    "worsening_after_window": ("S1", "S3"),
}
D5 = ("S3", "S6")
D6 = ("S5",)
D7 = ("S3", "S5")
LABEL = ("S5", "S6")
