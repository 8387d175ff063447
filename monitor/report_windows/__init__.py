"""The weekly reporting rhythm (issue 16): a patient on a course is asked to report their
symptoms once in every 7-day window counted from the enrolment; staff see who has not."""
