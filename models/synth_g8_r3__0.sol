# sprkit 0.1.0 certified optimum (gap <= 1e-9)
instance synth_g8_r3.npz
lam0 0.2
lam2 0.05
M 1.0
objective 1.659784283314659
bound 1.659784283314658
kept 3 6
checked scip 1.6597844259952015
