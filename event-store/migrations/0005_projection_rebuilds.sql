-- A blue/green rebuild in progress: the version being built beside the active one.
-- `vectis projections rebuild` sets it, builds that version's tables under its own
-- checkpoints, and in one transaction repoints the `read` views, makes it active and
-- clears this column. A rebuild interrupted part-way resumes from this version.
ALTER TABLE projections ADD COLUMN building_version integer;
ALTER TABLE projections ADD COLUMN building_started_at timestamptz;
