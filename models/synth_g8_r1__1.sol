# sprkit 0.1.0 certified optimum (gap <= 1e-9)
instance synth_g8_r1.npz
lam0 0.05
lam2 0.2
M 2.0
objective 1.1025445007606023
bound 1.102544500760602
kept 2 7
checked scip 1.1025445551972395
